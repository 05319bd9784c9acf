"""Hostile HTTP against the real process: each attack is closed within the
documented limits, and a normal client keeps receiving on time throughout."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ServerFactory, ServerProcess, Stream, open_stream

IDLE_TIMEOUT = 1.0
HALF_OPEN = 2000


@pytest.fixture
def server(server_process: ServerFactory) -> ServerProcess:
    return server_process("--tick-interval", "3600", "--idle-timeout", str(IDLE_TIMEOUT))


@asynccontextmanager
async def normal_client(
    server: ServerProcess,
) -> AsyncIterator[tuple[aiohttp.ClientSession, Stream]]:
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=t") as stream,
    ):
        yield session, stream


async def still_served(
    session: aiohttp.ClientSession, server: ServerProcess, stream: Stream
) -> None:
    """A publish reaches the normal client within a second.

    The publish goes on a new connection: a kept-alive one could be closed by
    the server's idle timeout just as it is reused, since these tests set that
    timeout to a second.
    """
    sent = time.monotonic()
    url, body = f"{server.url}/publish", {"topic": "t", "data": "ok"}
    async with session.post(url, json=body, headers={"Connection": "close"}) as response:
        assert response.status == 200
        event_id = (await response.json())["id"]
    (event,) = await stream.events(1, timeout=1.0)
    assert event.id == event_id
    assert time.monotonic() - sent < 1.0


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent before it closed the connection."""
    async with asyncio.timeout(within):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def test_slowloris_is_cut_at_the_idle_timeout(server: ServerProcess) -> None:
    async with normal_client(server) as (session, stream):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()

        async def drip() -> None:
            for byte in b"GET /events HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(drip())
        await still_served(session, server, stream)
        await closed_by_server(reader, within=IDLE_TIMEOUT + 2)
        dripping.cancel()
        writer.close()
        assert time.monotonic() - started < IDLE_TIMEOUT + 2
        await still_served(session, server, stream)


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
PATHS = ["fresh connection", "kept-alive connection"]
REFUSALS = {
    "garbage request line": (
        b"HELLO THERE\r\n\r\n",
        400, "malformed request line: the method is not an HTTP method",
    ),
    "TLS hello on plain HTTP": (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,
        400, "TLS sent to a plain-HTTP port: use http://, not https://",
    ),
    "HTTP/2 preface": (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        400, "HTTP/2 is not served here: use HTTP/1.1",
    ),
    "NUL in a header value": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        400, "malformed request: Invalid header value char",
    ),
    "no Host header": (
        b"GET /healthz HTTP/1.1\r\n\r\n",
        400, "malformed request: Missing 'Host' header in request",
    ),
    "malformed header": (
        b"GET /events HTTP/1.1\r\nHost: x\r\nX-Bad Header\r\n\r\n",
        400, "malformed request: Invalid header token",
    ),
    "9 KB URL": (
        b"GET /events?topic=" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414, "the URL is longer than 8190 bytes",
    ),
    "20 KB header": (
        b"GET /events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        431, "a header is longer than 8192 bytes",
    ),
    "2,000 headers": (
        b"GET /events HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Many-%d: y\r\n" % i for i in range(2000)) + b"\r\n",
        431, "more than 128 headers",
    ),
}  # fmt: skip


async def open_on(
    server: ServerProcess, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose next request meets the front door (fresh), or aiohttp's
    own parser (kept alive after a first request)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    if path == "kept-alive connection":
        writer.write(HEALTH)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200 OK")
    return reader, writer


def json_answer(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"Content-Type: application/json" in head, head
    return status, json.loads(body)


async def test_a_head_begun_just_before_the_idle_timeout_is_still_held_to_it(
    server_process: ServerFactory,
) -> None:
    """The front door hands a connection over at its first byte; aiohttp's own
    timer, started only then, would have allowed almost twice the idle timeout."""
    idle = 3.0
    server = server_process("--tick-interval", "3600", "--idle-timeout", str(idle))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    await asyncio.sleep(idle * 0.9)
    dripping = asyncio.create_task(
        send_slowly(writer, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100, 1, 0.05)
    )
    try:
        await closed_by_server(reader, within=idle * 2)
    finally:
        dripping.cancel()
        writer.close()
    assert time.monotonic() - started < idle * 1.5


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", list(REFUSALS))
async def test_malformed_requests_get_a_precise_json_error_and_a_close(
    server: ServerProcess, kind: str, path: str
) -> None:
    request_bytes, status, error = REFUSALS[kind]
    async with normal_client(server) as (session, stream):
        reader, writer = await open_on(server, path)
        writer.write(request_bytes)
        answer = await closed_by_server(reader, within=IDLE_TIMEOUT + 2)
        writer.close()
        # The whole answer, so nothing of the request is quoted back.
        assert json_answer(answer) == (status, {"error": error, "status": status})
        await still_served(session, server, stream)
    assert "Traceback" not in server.log()


def publish_head(length: int) -> bytes:
    return (
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


TRICKLE_EVERY = 0.6
"""Off the 1 s window's edge: a byte arriving just as the server closes makes the
kernel reset the connection, and the client then loses the 408 it was sent."""


async def send_slowly(writer: asyncio.StreamWriter, body: bytes, piece: int, every: float) -> None:
    for start in range(0, len(body), piece):
        writer.write(body[start : start + piece])
        await asyncio.sleep(every)


@pytest.mark.parametrize("path", PATHS)
async def test_a_trickling_body_is_answered_408_and_closed(
    server: ServerProcess, path: str
) -> None:
    """A byte every 0.6 s is cut once a window of --idle-timeout has passed with
    fewer than --min-body-rate (500) bytes a second, while a body at 5,000 bytes
    a second, taking four windows in all, is served."""
    steady_body = json.dumps({"topic": "t", "data": "s" * 19_970}).encode()
    async with normal_client(server) as (session, stream):
        # Each head goes out as soon as its connection is open: an open
        # connection left idle for the idle timeout (a second here) is rightly
        # closed without a word, and opening the other one can take that long
        # on a loaded machine.
        reader, writer = await open_on(server, path)
        writer.write(publish_head(60_000))
        started = time.monotonic()
        steady_reader, steady_writer = await open_on(server, path)
        steady_writer.write(publish_head(len(steady_body)))
        trickling = asyncio.create_task(send_slowly(writer, b"x" * 60_000, 1, TRICKLE_EVERY))
        steady = asyncio.create_task(send_slowly(steady_writer, steady_body, 500, 0.1))
        try:
            answer = await closed_by_server(reader, within=IDLE_TIMEOUT + 5)
            cut_after = time.monotonic() - started
            status, error = json_answer(answer)
            assert status == 408
            assert error["status"] == 408
            assert "request body too slow" in str(error["error"])
            assert b"Connection: close" in answer
            assert cut_after < IDLE_TIMEOUT + 2
            await still_served(session, server, stream)
            steady_answer = await steady_reader.readuntil(b"}")
            assert steady_answer.startswith(b"HTTP/1.1 200 OK"), steady_answer
        finally:
            trickling.cancel()
            steady.cancel()
            writer.close()
            steady_writer.close()
    assert "Traceback" not in server.log()


async def test_a_trickling_upload_is_answered_408_and_leaves_no_file(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = server_process("--idle-timeout", str(IDLE_TIMEOUT), "--data-dir", str(data_dir))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\na,b\n'
    )
    trickling = asyncio.create_task(send_slowly(writer, b"1,2\n" * 15_000, 1, TRICKLE_EVERY))
    try:
        answer = await closed_by_server(reader, within=IDLE_TIMEOUT + 5)
    finally:
        trickling.cancel()
        writer.close()
    status, error = json_answer(answer)
    assert (status, error["status"]) == (408, 408)
    assert list((data_dir / "uploads").iterdir()) == []


async def test_a_body_sent_to_events_is_ignored(server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/events?topic=t", data=b"x" * 10_000) as response,
    ):
        assert response.status == 200
        stream = Stream(response)
        async with session.post(f"{server.url}/publish", json={"topic": "t", "data": "y"}) as r:
            assert r.status == 200
        (event,) = await stream.events(1)
        assert event.data == "y"


async def test_thousands_of_half_open_connections_neither_starve_nor_linger(
    server: ServerProcess,
) -> None:
    baseline = server.open_fds()
    async with normal_client(server) as (session, stream):
        sockets = []
        for _ in range(HALF_OPEN):
            sock = socket.socket()
            sock.setblocking(False)
            with suppress(BlockingIOError):
                sock.connect(("127.0.0.1", server.port))
            sockets.append(sock)
        try:
            await still_served(session, server, stream)
            # Connected but silent: each is closed once the idle timeout passes.
            deadline = time.monotonic() + IDLE_TIMEOUT + 10
            while server.open_fds() > baseline + 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert server.open_fds() <= baseline + 5
            await still_served(session, server, stream)
        finally:
            for sock in sockets:
                sock.close()
