"""Hostile HTTP against the real process: each attack is closed within the
documented limits, and a normal client keeps receiving on time throughout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

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


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"HELLO THERE\r\n\r\n", b"400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100, b"400"),
    ],
    ids=["oversized header", "garbage request line", "TLS hello on plain HTTP"],
)
async def test_malformed_requests_get_an_error_and_a_close(
    server: ServerProcess, request_bytes: bytes, status: bytes
) -> None:
    async with normal_client(server) as (session, stream):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_bytes)
        answer = await closed_by_server(reader, within=IDLE_TIMEOUT + 2)
        writer.close()
        assert answer.split(b"\r\n", 1)[0].split(b" ")[1] in (status, b"400")
        await still_served(session, server, stream)
    log = server.log()
    assert "Traceback" not in log


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
