"""The front door: what it serves itself is what aiohttp would have served, and
everything else reaches aiohttp intact.

The unit tests drive the real `StreamProtocol` with a transport stand-in; the
wire tests run `python -m broadcaster`, whose fresh connections meet the front
door, against a kept-alive connection, whose later requests aiohttp serves.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from broadcaster.app import SHUTDOWN
from tests.conftest import ServerFactory, ServerProcess, read_until
from tests.support.front_door import Handoff, accept, connect, door, get
from tests.support.polling import until

DATE = re.compile(rb"Date: [^\r]*\r\n")
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_plain_request_streams_and_ends_with_the_last_chunk() -> None:
    async with door() as front:
        _, transport = connect(front, get())
        await front.broker.publish("t", "one")
        front.broker.close_all(SHUTDOWN)
        await transport.changed(lambda: transport.closed)
        body, ended = transport.body()
    assert ended
    assert body.startswith(b"retry: 2000\n\n: connected\n\n")
    assert body.index(b"data: one\n") < body.index(b"event: shutdown")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /events HTTP/1.0\r\n\r\n",
        b"GET /events/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /eventsource HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /events HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /events HTTP/1.1\r\nHost: x\r\n",  # not complete yet
        get() + b"GET /healthz HTTP/1.1\r\n\r\n",  # pipelined
        get(extra="Content-Length: 3\r\n") + b"abc",
        get(extra="Transfer-Encoding: chunked\r\n"),
        get(extra="Upgrade: websocket\r\nConnection: upgrade\r\n"),
        get("topic=no%20spaces"),
        get("topic=" + "x" * 65),
        b"GET /events HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /events?" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ],
    ids=[
        "POST", "HTTP/1.0", "trailing slash", "longer path", "HEAD", "incomplete head",
        "pipelined", "body", "chunked body", "upgrade", "bad topic", "long topic",
        "malformed header", "over-long line", "TLS hello",
    ],
)  # fmt: skip
async def test_anything_but_the_plain_case_goes_to_aiohttp_byte_for_byte(
    request_bytes: bytes,
) -> None:
    async with door() as front:
        protocol, transport = connect(front, request_bytes)
        assert isinstance(transport.handed_to, Handoff)
        assert transport.handed_to.received == request_bytes
        assert transport.wire == b""
        assert front.broker.client_count == 0
        protocol.connection_lost(None)


async def test_at_the_client_limit_aiohttp_answers() -> None:
    async with door(max_clients=1) as front:
        connect(front, get())
        _, second = connect(front, get())
        assert isinstance(second.handed_to, Handoff)
        assert front.broker.client_count == 1


async def test_a_disconnect_unsubscribes_and_frees_the_protocol() -> None:
    async with door() as front:
        protocol, _ = connect(front, get())
        assert front.broker.client_count == 1
        assert front.streams == {protocol}
        protocol.connection_lost(None)
        assert front.broker.client_count == 0
        assert not front.streams


async def test_frames_published_during_a_replay_are_sent_once() -> None:
    """Between the subscription and the replay, a live frame is both queued and
    in the history: the stream must send it once, in order."""
    async with door(history=100) as front:
        first = await front.broker.publish("t", "before")
        _, transport = connect(front, get(extra=f"Last-Event-ID: {first.id}\r\n"))
        # Published before the replay task has run: queued, and in the history too.
        await front.broker.publish("t", "during")
        front.broker.flush()
        # The replay is written.
        await transport.changed(lambda: b"data: during\n" in transport.wire)
        await front.broker.publish("t", "after")
        await transport.changed(lambda: b"data: after\n" in transport.wire)
        body, _ = transport.body()
    assert body.count(b"data: during\n") == 1
    assert body.index(b"data: during\n") < body.index(b"data: after\n")
    assert b"data: before\n" not in body


async def test_shutdown_ends_streams_and_closes_silent_connections() -> None:
    async with door() as front:
        _, streaming = connect(front, get())
        _, silent = accept(front)
        front.broker.close_all(SHUTDOWN)
        async with asyncio.timeout(2):
            await front.wait_closed(1.0)
        assert streaming.closed
        assert not streaming.aborted
        assert streaming.body()[1]
        assert silent.closed
        assert not front.streams
        assert not front.sniffing


async def test_shutdown_cuts_a_stream_that_will_not_flush() -> None:
    async with door() as front:
        _, stalled = connect(front, get())
        stalled.set_buffer(full=True, pause=True)
        front.broker.close_all(SHUTDOWN)
        await front.wait_closed(0.05)
        assert stalled.aborted


async def test_a_silent_connection_is_closed_at_the_idle_timeout() -> None:
    async with door(idle_timeout=0.05) as front:
        protocol, transport = accept(front)
        assert front.sniffing == {protocol}
        await transport.changed(lambda: transport.closed)
        await until(lambda: not front.sniffing)
        assert transport.wire == b""
        assert transport.handed_to is None


# On the wire, against the real process.


OPENED = b": connected\n\n\r\n"
JSON_END = b"}"


def exchange(port: int, requests: list[tuple[bytes, bytes | None]]) -> list[bytes]:
    """Send each request on one connection; after each, read until the given
    bytes have arrived, or (None) until the server closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        answers = []
        for request, until in requests:
            sock.sendall(request)
            answers.append(read_until(sock, until))
    return answers


@pytest.fixture
def server(server_process: ServerFactory) -> ServerProcess:
    return server_process(
        "--tick-interval", "3600", "--cors-origins", "http://allowed.example",
    )  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    ["", "Origin: http://allowed.example\r\n", "Origin: http://other.example\r\n"],
    ids=["no origin", "allowed origin", "other origin"],
)
def test_the_front_door_writes_what_aiohttp_writes(server: ServerProcess, extra: str) -> None:
    request = get("topic=a&topic=b", extra)
    (fresh,) = exchange(server.port, [(request, OPENED)])
    # After a first request on a kept-alive connection, aiohttp serves the stream.
    health, kept_alive = exchange(server.port, [(HEALTH, JSON_END), (request, OPENED)])
    assert health.startswith(b"HTTP/1.1 200 OK")
    assert fresh.startswith(b"HTTP/1.1 200 OK\r\n")
    assert DATE.sub(b"", fresh) == DATE.sub(b"", kept_alive)
    assert (b"Access-Control-Allow-Origin: http://allowed.example" in fresh) == ("allowed" in extra)


def test_requests_the_front_door_declines_get_aiohttp_answers(server: ServerProcess) -> None:
    cases = {
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n": b"405",
        get("topic=no%20spaces"): b"400",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n": b"404",
    }
    for request, status in cases.items():
        (answer,) = exchange(server.port, [(request, JSON_END)])
        assert answer.split(b" ", 2)[1] == status, (request, answer[:200])
        assert b'"error"' in answer
    # aiohttp answers a request it cannot parse itself, before the app sees it.
    bad = b"GET /events HTTP/1.1\r\nBad Header\r\n\r\n"
    (malformed,) = exchange(server.port, [(bad, None)])
    assert malformed.split(b" ", 2)[1] == b"400"
    assert malformed.endswith(
        b'\r\n\r\n{"error": "malformed request: Invalid header token", "status": 400}'
    )
    (head,) = exchange(server.port, [(b"HEAD /events HTTP/1.1\r\nHost: x\r\n\r\n", None)])
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert head.endswith(b"\r\n\r\n")
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("path", ["front door", "aiohttp"])
def test_a_resync_for_a_malformed_id_carries_the_newest_id(
    server: ServerProcess, path: str
) -> None:
    body = b'{"topic": "a", "data": "x"}'
    publish = (
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    (published,) = exchange(server.port, [(publish, JSON_END)])
    newest = json.loads(published.partition(b"\r\n\r\n")[2])["id"]
    request, resync_end = get("topic=a", "Last-Event-ID: not-an-id\r\n"), b'"}\n\n'
    if path == "front door":
        (answer,) = exchange(server.port, [(request, resync_end)])
    else:
        _, answer = exchange(server.port, [(HEALTH, JSON_END), (request, resync_end)])
    assert f"\nid: {newest}\nevent: resync\ndata: ".encode() in answer
    assert b"malformed event id" in answer


REQUEST_LINES = st.sampled_from(
    [
        b"GET /events HTTP/1.1", b"GET /events?topic=a&topic=b:c HTTP/1.1",
        b"GET /events?lastEventId=1-1 HTTP/1.1", b"GET /events?topic=%ff HTTP/1.1",
        b"GET /events?topic= HTTP/1.1", b"GET /events HTTP/1.0", b"GET /events HTTP/2.0",
        b"GET /eventsx HTTP/1.1", b"GET /events/../events HTTP/1.1", b"GET  /events HTTP/1.1",
        b"GET /events", b"get /events HTTP/1.1", b"GET /events\x00 HTTP/1.1",
    ]
)  # fmt: skip
HEADER_LINES = st.lists(
    st.sampled_from([b"Origin: http://o", b"Last-Event-ID: 1-2", b"Last-Event-ID: junk"]),
    max_size=3,
)
ODD_HEADERS = st.lists(
    st.sampled_from(
        [
            b"Content-Length: 1", b"Content-Length: 0", b"Transfer-Encoding: chunked",
            b"Connection: upgrade", b"Upgrade: websocket", b"X: \x00", b"X: \xff", b"Bad",
            b" folded", b"X:" + b"a" * 9000, b"Host:x\nY: z",
        ]
    ),
    max_size=1,
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    line=REQUEST_LINES,
    headers=HEADER_LINES,
    odd=ODD_HEADERS,
    tail=st.one_of(st.just(b""), st.binary(min_size=1, max_size=8)),
    hosts=st.integers(0, 2),
    plain=st.booleans(),
)
def test_no_first_read_makes_the_front_door_raise(
    line: bytes, headers: list[bytes], odd: list[bytes], tail: bytes, hosts: int, plain: bool
) -> None:
    """Whatever arrives, the front door streams it or hands it over whole: an
    exception here would reach uvloop as a traceback and a dropped connection.
    Half the examples are plain requests, so that serving is exercised too
    (aiohttp's parser wants exactly one Host header in HTTP/1.1)."""
    if plain:
        line, odd, tail, hosts = b"GET /events?topic=a HTTP/1.1", [], b"", 1
    head = b"".join(header + b"\r\n" for header in [b"Host: x"] * hosts + headers + odd)
    data = line + b"\r\n" + head + b"\r\n" + tail

    async def check() -> None:
        async with door() as front:
            protocol, transport = connect(front, data)
            # Served with a Last-Event-ID, the head waits for a replay task.
            await transport.changed(lambda: transport.handed_to is not None or transport.wire)
            event("served" if transport.handed_to is None else "handed over")
            if transport.handed_to is None:
                assert front.broker.client_count == 1
                assert transport.wire.startswith(b"HTTP/1.1 200 OK\r\n")
            else:
                assert front.broker.client_count == 0
                assert transport.handed_to.received == data
            protocol.connection_lost(None)
            assert front.broker.client_count == 0

    asyncio.run(check())
