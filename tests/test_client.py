"""`broadcaster.client.listen`, against real servers: broadcaster embedded in
an aiohttp application, and small aiohttp servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import broadcaster
from broadcaster.client import ListenError, Retry, ServerEvent, listen
from broadcaster.client.listener import events_url

QUIET = broadcaster.Settings(tick_interval=3600, heartbeat_interval=3600, retry_ms=20)


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def take(events: AsyncIterator[ServerEvent], count: int) -> list[ServerEvent]:
    async with asyncio.timeout(10):
        return [await anext(events) for _ in range(count)]


async def test_listen_resumes_after_a_drop_with_last_event_id() -> None:
    """A server that ends every stream after one event: the client reconnects
    at its `retry:`, sending the id it saw last."""
    seen_ids: list[str | None] = []

    async def one_at_a_time(request: web.Request) -> web.StreamResponse:
        seen_ids.append(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        n = len(seen_ids)
        await response.write(f"retry: 10\nid: 0-{n}\ndata: event {n}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_get("/events", one_at_a_time)
    retries: list[Retry] = []
    async with serving(app) as server:
        stream = listen(str(server.make_url("/")), ["t"], on_retry=retries.append)
        async with aclosing(stream) as events:
            got = await take(events, 3)
    assert [(e.id, e.data) for e in got] == [
        ("0-1", "event 1"),
        ("0-2", "event 2"),
        ("0-3", "event 3"),
    ]
    assert seen_ids == [None, "0-1", "0-2"]
    # Each stream opened, so each wait is the server's `retry:` again, not doubled.
    assert retries[:2] == [Retry(0.01), Retry(0.01)]


async def test_listen_surfaces_resync_and_shutdown_from_broadcaster() -> None:
    app = web.Application()
    broker = broadcaster.setup(app, QUIET)
    async with serving(app) as server:
        base = str(server.make_url("/sse/events"))
        async with aclosing(listen(base, ["t"], last_event_id="1-1")) as events:
            [resync] = await take(events, 1)
            sent = await broker.publish("t", "after the resync")
            [live] = await take(events, 1)
            await app.shutdown()
            [shutdown] = await take(events, 1)
    assert resync.event == "resync"
    assert (live.id, live.data) == (str(sent.id), "after the resync")
    assert shutdown.event == "shutdown"


async def test_a_refusal_retrying_cannot_change_raises_in_the_servers_words() -> None:
    app = web.Application()
    broadcaster.setup(app, QUIET)
    async with serving(app) as server:
        where = server.make_url("/sse/events")
        with pytest.raises(ListenError) as raised:
            async with aclosing(listen(where, ["bad topic"])) as events:
                await take(events, 1)
    assert str(raised.value).startswith(f"{where} answered 400: invalid topic 'bad topic'")


async def test_a_busy_server_is_waited_out_for_its_retry_after() -> None:
    answers = [web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "0"})]

    async def busy_then_open(request: web.Request) -> web.StreamResponse:
        if answers:
            return answers.pop()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: in\n\n")
        await asyncio.Event().wait()  # stays open, as a stream does
        return response

    app = web.Application()
    app.router.add_get("/events", busy_then_open)
    retries: list[Retry] = []
    async with serving(app) as server:
        where = server.make_url("/events")
        async with aclosing(listen(where, on_retry=retries.append)) as events:
            [event] = await take(events, 1)
    assert event.data == "in"
    # No stream yet, so no `retry:`: the first wait is 1 s, longer than Retry-After.
    assert retries == [Retry(1.0, f"{where} answered 503: busy")]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:8000", "http://h:8000/events?topic=a&topic=b"),
        ("http://h:8000/", "http://h:8000/events?topic=a&topic=b"),
        ("https://h/sse/events", "https://h/sse/events?topic=a&topic=b"),
    ],
)
def test_the_stream_url_is_the_servers_events_or_the_path_given(given: str, expected: str) -> None:
    assert str(events_url(given, ["a", "b"])) == expected


@pytest.mark.parametrize("given", ["localhost:8000", "ftp://h/", "http://"])
def test_a_url_that_is_not_http_is_refused_before_connecting(given: str) -> None:
    with pytest.raises(ValueError, match="is not an http:// or https:// URL with a host"):
        events_url(given)


def test_one_string_for_topics_is_refused_not_spelled_out() -> None:
    with pytest.raises(TypeError, match=re.escape("not one string: topics=['orders']")):
        events_url("http://h/", "orders")


def test_the_client_imports_nothing_of_the_servers_side() -> None:
    """Enforced by tests/test_layout.py too; here, as a user sees it."""
    code = (
        "import json, sys; import broadcaster.client; "
        "print(json.dumps([m for m in sys.modules if m.startswith('broadcaster.')]))"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(probe.stdout)
    assert all(m.startswith(("broadcaster.client", "broadcaster.wire")) for m in loaded), loaded
