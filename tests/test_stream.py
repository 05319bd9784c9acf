"""/events in-process: headers, opening frame, fan-out, replay and resync."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from broadcaster.app import create_app
from broadcaster.ops.config import Settings
from broadcaster.web.keys import BROKER
from broadcaster.web.stream import events
from tests.conftest import Stream, open_stream

QUIET = Settings(tick_interval=3600, heartbeat_interval=3600, history=5)
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(aiohttp_client: Any) -> MakeClient:
    async def make(**overrides: Any) -> Client:
        client: Client = await aiohttp_client(create_app(replace(QUIET, **overrides)))
        return client

    return make


async def publish(client: Client, topic: str, data: str) -> str:
    event = await client.app[BROKER].publish(topic, data)
    return str(event.id)


async def test_headers_and_opening_frame_arrive_before_any_event(make_client: MakeClient) -> None:
    client = await make_client(retry_ms=1500)
    async with client.get("/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        opening = await response.content.readuntil(b": connected\n\n")
    assert opening == b"retry: 1500\n\n: connected\n\n"


async def test_headers_and_opening_frame_leave_in_one_write(aiohttp_client: Any) -> None:
    """One segment, not two: `EventStreamResponse` sets aiohttp's private
    `_send_headers_immediately`; this fails on the upgrade that stops reading it."""
    sends: list[bytes] = []

    async def recorded(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        write, writelines = transport.write, transport.writelines

        def record(data: bytes) -> None:
            sends.append(bytes(data))
            write(data)

        def record_lines(parts: Iterable[bytes]) -> None:
            sends.append(b"".join(parts))
            writelines(parts)

        transport.write, transport.writelines = record, record_lines  # type: ignore[method-assign, assignment]
        return await events(request)

    app = create_app(QUIET)
    app.router.add_get("/recorded", recorded)
    client: Client = await aiohttp_client(app)
    async with client.get("/recorded") as response:
        await response.content.readuntil(b": connected\n\n")
    assert sends[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert sends[0].endswith(b": connected\n\n\r\n")


async def test_three_clients_read_the_same_ids_in_order(make_client: MakeClient) -> None:
    client = await make_client()
    async with (
        open_stream(client.session, str(client.make_url("/events?topic=t"))) as a,
        open_stream(client.session, str(client.make_url("/events?topic=t"))) as b,
        open_stream(client.session, str(client.make_url("/events?topic=t"))) as c,
    ):
        assert client.app[BROKER].client_count == 3
        sent = [await publish(client, "t", f"m{i}") for i in range(5)]
        for stream in (a, b, c):
            assert [e.id for e in await stream.events(5)] == sent


async def test_topics_are_separate_and_combinable(make_client: MakeClient) -> None:
    client = await make_client()
    url = str(client.make_url("/events?topic=a&topic=b"))
    async with open_stream(client.session, url) as both:
        await publish(client, "c", "not mine")
        ids = [await publish(client, "a", "1"), await publish(client, "b", "2")]
        assert [e.id for e in await both.events(2)] == ids


async def test_heartbeat_comments_are_sent(make_client: MakeClient) -> None:
    client = await make_client(heartbeat_interval=0.05)
    async with client.get("/events") as response:
        await response.content.readuntil(b": connected\n\n")
        assert await response.content.readuntil(b"\n\n") == b": heartbeat\n\n"


async def reconnect(client: Client, last_id: str, how: str = "header") -> Stream:
    headers = {"Last-Event-ID": last_id} if how == "header" else {}
    query = f"&lastEventId={last_id}" if how == "query" else ""
    response = await client.get(f"/events?topic=t{query}", headers=headers)
    return Stream(response)


@pytest.mark.parametrize("how", ["header", "query"])
async def test_replay_then_live_without_gap_or_duplicate(make_client: MakeClient, how: str) -> None:
    client = await make_client()
    ids = [await publish(client, "t", str(i)) for i in range(4)]
    stream = await reconnect(client, ids[0], how)
    replayed = await stream.events(3)
    live = await publish(client, "t", "live")
    assert [e.id for e in replayed] + [(await stream.events(1))[0].id] == [*ids[1:], live]
    stream.response.close()


@pytest.mark.parametrize(
    ("last_id", "reason"),
    [
        ("garbage", "malformed event id"),
        ("1-1", "not in this server's history"),  # from another run
        ("OLDEST", "not in this server's history"),  # fell out of the history
        ("FUTURE", "not in this server's history"),
    ],
)
async def test_resync(make_client: MakeClient, last_id: str, reason: str) -> None:
    client = await make_client()
    ids = [await publish(client, "t", str(i)) for i in range(7)]  # history keeps 5
    epoch = ids[0].split("-")[0]
    last_id = {"OLDEST": ids[0], "FUTURE": f"{epoch}-99"}.get(last_id, last_id)
    stream = await reconnect(client, last_id)
    resync = (await stream.events(1))[0]
    assert resync.event == "resync"
    assert reason in json.loads(resync.data)["reason"]
    assert resync.id == ids[-1]
    live = await publish(client, "t", "after")
    assert (await stream.events(1))[0].id == live
    stream.response.close()


async def test_a_resync_with_no_event_yet_clears_the_stale_id(make_client: MakeClient) -> None:
    """After a restart nothing has been published: the resync's empty `id:`
    resets the client's last event id, or each reconnect would resync again."""
    client = await make_client()
    response = await client.get("/events?topic=t", headers={"Last-Event-ID": "1-1"})
    body = b""
    while b"event: resync" not in body:
        body += await asyncio.wait_for(response.content.readany(), 5)
    assert b"id: \nevent: resync\n" in body
    response.close()


async def test_bad_topic_is_a_400_saying_why(make_client: MakeClient) -> None:
    client = await make_client()
    async with client.get("/events?topic=no spaces") as response:
        assert response.status == 400
        assert "invalid topic" in (await response.json())["error"]


async def test_max_clients_answers_503_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(max_clients=1)
    async with (
        open_stream(client.session, str(client.make_url("/events"))),
        client.get("/events") as response,
    ):
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert "limit of 1 client" in (await response.json())["error"]


async def test_shutdown_sends_the_shutdown_event_then_ends(make_client: MakeClient) -> None:
    client = await make_client()
    async with open_stream(client.session, str(client.make_url("/events"))) as stream:
        await client.app.shutdown()
        events = await stream.rest()
    assert [e.event for e in events] == ["shutdown"]
