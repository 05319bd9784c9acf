"""The Mercure hub in process: its cap on live URL patterns, the form and ids
it takes, and tokens it ignores (no key; a stale cookie)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from broadcaster.app import create_app
from broadcaster.fanout import mercure_router
from broadcaster.ops.config import Settings

HUB = "/.well-known/mercure"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SECRET = "mercure-secret-" + "m" * 40
QUIET = Settings(tick_interval=3600, heartbeat_interval=3600, history=5)
Client = TestClient[web.Request, web.Application]


async def test_a_subscription_past_the_pattern_cap_is_refused_with_503(
    aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mercure_router, "MAX_PATTERNS", 2, raising=False)
    client: Client = await aiohttp_client(create_app(QUIET))
    live = [("match_urlpattern", "/books/:id"), ("match_urlpattern", "/authors/:id")]
    async with client.get(f"{HUB}?{urlencode(live)}") as following:
        assert following.status == 200
        await following.content.readuntil(b": connected\n\n")
        query = urlencode([("match_urlpattern", "/films/:id")])
        async with client.get(f"{HUB}?{query}") as refused:
            assert refused.status == 503
            assert refused.headers["Retry-After"].isdigit()
            assert "at most 2" in json.loads(await refused.text())["error"]
        async with client.get(f"{HUB}?{urlencode(live[:1])}") as again:
            assert again.status == 200  # a pattern already followed is no new one


async def post(client: Client, body: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with client.post(HUB, data=body, headers={**FORM, **(headers or {})}) as answer:
        return answer.status, await answer.text()


async def next_data(stream: Any) -> bytes:
    """The stream up to the next `data: public` line (what the tests end with)."""
    return bytes(await stream.content.readuntil(b"data: public\n\n"))


async def test_empty_pairs_are_skipped_and_a_bare_private_counts(aiohttp_client: Any) -> None:
    client: Client = await aiohttp_client(create_app(QUIET))
    async with client.get(f"{HUB}?match=t") as stream:
        await stream.content.readuntil(b": connected\n\n")
        for body in ("topic=t&private&data=secret", "&topic=t&&private&data=secret&"):
            status, text = await post(client, body)
            assert status == 200, text
        status, text = await post(client, "topic=t&&data=public&")
        assert status == 200, text
        assert b"secret" not in await next_data(stream)  # private: not for anonymous


async def test_ids_of_the_hub_s_own_shape_are_refused(aiohttp_client: Any) -> None:
    client: Client = await aiohttp_client(create_app(QUIET))
    for custom in ("1-2", "1764531000000-7", " 12-34 "):
        status, text = await post(client, urlencode([("topic", "t"), ("id", custom)]))
        assert status == 400, custom
        assert "own ids" in json.loads(text)["error"]
    status, text = await post(client, urlencode([("topic", "t"), ("id", "book-1")]))
    assert (status, text) == (200, "book-1")


async def test_a_backslash_does_not_bypass_the_reserved_namespace(aiohttp_client: Any) -> None:
    client: Client = await aiohttp_client(create_app(QUIET))
    for topic in (
        "/.well-known\\mercure/subscriptions/x",
        "https://hub.example\\.well-known\\mercure",
        "\\.well-known/mercure/x",
    ):
        status, text = await post(client, urlencode([("topic", topic)]))
        assert status == 400, topic
        assert "reserved namespace" in json.loads(text)["error"]


async def test_a_query_string_that_is_not_utf8_is_400(aiohttp_client: Any) -> None:
    client: Client = await aiohttp_client(create_app(QUIET))
    async with client.get(f"{HUB}?match=%FF") as answer:
        assert answer.status == 400
        assert "UTF-8" in json.loads(await answer.text())["error"]


async def test_with_no_key_tokens_are_ignored(aiohttp_client: Any) -> None:
    client: Client = await aiohttp_client(create_app(QUIET))
    # Loopback, no publish token: allowed, whatever token Symfony sends.
    status, text = await post(client, "topic=t&data=first", {"Authorization": "Bearer x"})
    assert status == 200, text
    garbage = {"Cookie": "mercureAuthorization=garbage; broadcaster_token=x"}
    async with client.get(f"{HUB}?match=t", headers=garbage) as stream:
        assert stream.status == 200, await stream.text()
        await stream.content.readuntil(b": connected\n\n")
        status, text = await post(client, "topic=t&data=public", {"Authorization": "Bearer x"})
        assert status == 200, text
        await next_data(stream)


async def test_with_no_key_the_publish_token_rules_as_on_native_publish(
    aiohttp_client: Any,
) -> None:
    client: Client = await aiohttp_client(create_app(replace(QUIET, publish_token="p" * 32)))
    status, _ = await post(client, "topic=t", {"Authorization": "Bearer wrong"})
    assert status == 403
    status, text = await post(client, "topic=t", {"Authorization": f"Bearer {'p' * 32}"})
    assert status == 200, text


async def test_a_bad_cookie_reads_public_updates_a_bad_header_is_refused(
    aiohttp_client: Any,
) -> None:
    client: Client = await aiohttp_client(create_app(replace(QUIET, jwt_secret=SECRET)))
    expired = jwt.encode({"exp": int(time.time()) - 60}, SECRET, algorithm="HS256")
    publisher = jwt.encode(
        {"exp": int(time.time()) + 600, "mercure": {"publish": ["*"]}}, SECRET, algorithm="HS256"
    )
    as_publisher = {"Authorization": f"Bearer {publisher}"}
    async with client.get(f"{HUB}?match=t", headers={"Authorization": "Bearer bad"}) as refused:
        assert refused.status == 401
    stale = {"Cookie": f"mercureAuthorization={expired}"}
    async with client.get(f"{HUB}?match=t", headers=stale) as stream:
        assert stream.status == 200, await stream.text()
        await stream.content.readuntil(b": connected\n\n")
        status, text = await post(client, "topic=t&private&data=secret", as_publisher)
        assert status == 200, text
        status, text = await post(client, "topic=t&data=public", as_publisher)
        assert status == 200, text
        assert b"secret" not in await next_data(stream)
