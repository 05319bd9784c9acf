"""Against the real process (`python -m broadcaster`), not aiohttp's TestServer,
which turns on handler cancellation by itself and would hide a missing setting."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys

import aiohttp

from tests.conftest import ServerFactory, Stream, health, open_stream, read_until, wait_for

QUIET = ("--tick-interval", "3600", "--heartbeat-interval", "3600")


async def clients(session: aiohttp.ClientSession, base: str) -> object:
    return (await health(session, base))["clients"]


async def clients_are(session: aiohttp.ClientSession, base: str, count: int) -> bool:
    return await clients(session, base) == count


async def test_idle_client_that_disconnects_is_removed_within_a_second(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    async with aiohttp.ClientSession() as session:
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await asyncio.to_thread(read_until, raw, b": connected\n\n")
            assert await clients(session, server.url) == 1
        # The stream is idle (no ticks, no heartbeats): only cancellation can notice.
        await wait_for(lambda: clients_are(session, server.url, 0), 1.0, "the count to drop")
    log = server.log()
    assert "Added new client (1 connected)" in log
    assert "Removed client (0 connected)" in log
    assert re.search(r'"GET /events" 200 - \d+\.\d{3}s, stream ended: client disconnected', log)
    assert "Traceback" not in log


async def test_ticker_messages_reach_clients_and_are_logged(server_process: ServerFactory) -> None:
    server = server_process("--tick-interval", "0.05")
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events") as stream,
    ):
        ticks = await stream.events(3)
    assert {e.event for e in ticks} == {"tick"}
    assert all(
        re.fullmatch(r"the time is \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", e.data) for e in ticks
    )
    log = server.log()
    assert f"Sent message {ticks[0].id}" in log
    assert re.search(rf"Broadcast message {ticks[0].id} to 1 client$", log, re.M)


async def test_slow_client_is_evicted_while_a_fast_one_gets_everything(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET, "--queue-size", "8")
    payload = "x" * 32_000
    with socket.socket() as slow:
        # A tiny receive window, and no reads: the server's writes back up fast.
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(b"GET /events?topic=big HTTP/1.1\r\nHost: x\r\n\r\n")
        async with (
            aiohttp.ClientSession() as session,
            open_stream(session, f"{server.url}/events?topic=big") as fast,
        ):
            await wait_for(lambda: clients_are(session, server.url, 2), 5, "both clients")
            sent = await _publish_until_evicted(session, server.url, fast, payload)
            assert await clients(session, server.url) == 1
            # The fast client keeps receiving after the eviction.
            sent.append(await _publish(session, server.url, "after"))
            assert (await fast.events(1, timeout=5))[0].id == sent[-1]
    assert "Evicted slow client" in server.log()


async def _publish(session: aiohttp.ClientSession, base: str, data: str) -> str:
    async with session.post(f"{base}/publish", json={"topic": "big", "data": data}) as response:
        assert response.status == 200
        event_id: str = (await response.json())["id"]
        return event_id


async def _publish_until_evicted(
    session: aiohttp.ClientSession, base: str, fast: Stream, payload: str
) -> list[str]:
    sent: list[str] = []
    for _ in range(1000):
        sent.append(await _publish(session, base, payload))
        # Each message reaches the fast client promptly, whatever the slow one does.
        (event,) = await fast.events(1, timeout=5)
        assert event.id == sent[-1]
        if await clients(session, base) == 1:
            return sent
    raise AssertionError("the slow client was never evicted")


async def test_sigterm_with_200_streams_exits_fast_and_says_shutdown(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        responses = [await session.get(f"{server.url}/events") for _ in range(200)]
        streams = [Stream(r) for r in responses]
        assert await clients(session, server.url) == 200
        seconds = await asyncio.to_thread(server.terminate)
        endings = await asyncio.gather(*(s.rest(timeout=5) for s in streams))
        for response in responses:
            response.close()
    assert seconds < 2.0, f"exit took {seconds:.2f}s"
    assert all([e.event for e in events] == ["shutdown"] for events in endings)
    assert server.proc is not None
    assert server.proc.returncode == 0
    assert "Traceback" not in server.log()


async def test_sigterm_ends_a_long_stream_at_once(server_process: ServerFactory) -> None:
    """`/long` is not the broker's, so it ends on its own signal; without it the
    stream would hold the exit for the whole --shutdown-timeout."""
    server = server_process(*QUIET, "--shutdown-timeout", "20")
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/long?rows=2&step=1&delay=60") as stream,
    ):
        seconds = await asyncio.to_thread(server.terminate)
        events = await stream.rest(timeout=5)
    assert seconds < 2.0, f"exit took {seconds:.2f}s"
    assert [e.event for e in events] == ["shutdown"]
    assert server.proc is not None
    assert server.proc.returncode == 0


def test_a_port_in_use_is_one_clear_line(server_process: ServerFactory) -> None:
    server = server_process(*QUIET)
    second = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--port", str(server.port)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode == 1
    assert f"cannot listen on http://127.0.0.1:{server.port}: " in second.stderr
    assert "address already in use" in second.stderr
    assert "Traceback" not in second.stderr


async def test_port_0_logs_the_port_the_system_picked() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broadcaster", "--port", "0", "--tick-interval", "3600",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(20):
            while b"Running on" not in (line := await process.stderr.readline()):
                assert line, "the server stopped before saying where it runs"
        url = re.search(rb"Running on (http://\S+)", line)
        assert url is not None, line
        assert not url[1].endswith(b":0"), line
        async with (
            aiohttp.ClientSession() as session,
            session.get(url[1].decode() + "/healthz") as response,
        ):
            assert response.status == 200
    finally:
        process.terminate()
        await process.wait()
