"""Mercure through real Chromium: one page's EventSource on /.well-known/mercure
receives what another page publishes with fetch."""

from __future__ import annotations

import time

import jwt
import pytest
from playwright.async_api import Browser

from tests.conftest import ServerFactory

pytestmark = pytest.mark.browser

SECRET = "browser-mercure-" + "b" * 40
TOPIC = "https://example.com/books/1"


async def test_a_page_receives_what_another_page_publishes(
    browser: Browser, server_process: ServerFactory
) -> None:
    server = server_process(
        "--tick-interval", "3600", env={"BROADCASTER_JWT_SECRET": SECRET}
    )  # fmt: skip
    detail = {
        "type": "https://mercure.rocks/authorization-detail",
        "actions": ["publish"],
        "topics": [{"match": "https://example.com/books/:id", "match_type": "urlpattern"}],
    }
    publisher = jwt.encode(
        {"exp": int(time.time()) + 600, "authorization_details": [detail]}, SECRET, "HS256"
    )
    context = await browser.new_context()
    try:
        reader, writer = await context.new_page(), await context.new_page()
        await reader.goto(server.url)
        await writer.goto(server.url)
        await reader.evaluate(
            """() => new Promise((opened, failed) => {
                window.got = [];
                const url = new URL("/.well-known/mercure", location.origin);
                url.searchParams.append("match_urlpattern", "https://example.com/books/:id");
                const source = new EventSource(url);
                source.onopen = () => opened();
                source.onerror = () => source.readyState === 2 && failed(new Error("refused"));
                source.onmessage = (event) => window.got.push([event.lastEventId, event.data]);
            })"""
        )
        update_id = await writer.evaluate(
            """async ([token, topic]) => {
                const answer = await fetch("/.well-known/mercure", {
                    method: "POST",
                    headers: {Authorization: `Bearer ${token}`},
                    body: new URLSearchParams({topic, data: "hello from the other page"}),
                });
                if (answer.status !== 200) throw new Error(await answer.text());
                return await answer.text();
            }""",
            [publisher, TOPIC],
        )
        await reader.wait_for_function("window.got.length > 0", timeout=10_000)
        assert await reader.evaluate("window.got") == [[update_id, "hello from the other page"]]
    finally:
        await context.close()
