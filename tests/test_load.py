"""Under load, against the real process: slow clients cost nobody else, and a
SIGTERM with thousands of clients connected ends promptly and cleanly."""

from __future__ import annotations

import asyncio
import resource
import socket
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.run import LoadClient, build
from broadcaster.broker import HIGH_WATER
from tests.conftest import ServerFactory, health, wait_for

NORMAL, SLOW = 200, 50
QUEUE = 32
PAYLOAD = 16_000
RATE, SECONDS = 50, 5.0  # 4 MB per client: past what the kernel buffers hold (~2.8 MB)
SHUTDOWN_CLIENTS = 5000


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def memory_bound_kib(slow: int, frame: int) -> float:
    """Documented in docs/RELIABILITY.md: what one stalled client can hold is its
    socket buffer up to the high-water mark, plus one frame written past it, plus
    one full queue drained into the socket as a single write."""
    return slow * (HIGH_WATER + frame + QUEUE * frame) / 1024


async def metric(session: aiohttp.ClientSession, base: str, name: str) -> float:
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


def stalled_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /events?topic=bench HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


async def test_slow_clients_are_evicted_and_cost_the_others_nothing(
    server_process: ServerFactory,
) -> None:
    raise_fd_limit()
    await asyncio.to_thread(build)
    server = server_process(
        "--tick-interval", "3600", "--queue-size", str(QUEUE), "--log-level", "WARNING"
    )
    normal = await asyncio.to_thread(LoadClient, server.port, NORMAL)
    slow: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def all_connected() -> bool:
                return (await health(session, server.url))["clients"] == NORMAL + SLOW

            before = server.rss_kib()
            slow = [stalled_client(server.port) for _ in range(SLOW)]
            await wait_for(all_connected, 10, "every client to connect")
            await asyncio.to_thread(normal.ask, "report")
            published = await _publish_padded(server.port)
            peak = server.rss_kib()

            async def all_received() -> bool:
                count = await asyncio.to_thread(normal.ask, "count")
                return bool(count["received"] >= published * NORMAL)

            await wait_for(all_received, 15, "the normal clients to receive everything")
            report = await asyncio.to_thread(normal.ask, "report")
            evictions = await metric(session, server.url, "broadcaster_evictions_total")
    finally:
        normal.close()
        for sock in slow:
            sock.close()
    assert report["received"] == published * NORMAL
    assert report["closed"] == 0
    assert evictions == SLOW
    frame = PAYLOAD + 100
    bound = memory_bound_kib(SLOW, frame)
    print(f"slow clients: RSS {before} -> {peak} KiB; bound {bound:.0f} KiB + 10 MiB")
    assert peak - before <= memory_bound_kib(SLOW, frame) + 10 * 1024, (before, peak)


async def _publish_padded(port: int) -> int:
    """publish_at with payloads padded to PAYLOAD bytes, keeping "<seq> <ns>" first."""
    url = f"http://127.0.0.1:{port}/publish"
    sent = 0
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while sent < RATE * SECONDS:
            sent += 1
            body = {"topic": "bench", "data": f"{sent} {time.time_ns()} " + "x" * PAYLOAD}
            async with session.post(url, json=body) as response:
                assert response.status == 200
            await asyncio.sleep(max(0.0, start + sent / RATE - loop.time()))
    return sent


async def test_sigterm_with_5000_clients(server_process: ServerFactory) -> None:
    raise_fd_limit()
    server = server_process("--tick-interval", "3600", "--log-level", "WARNING")
    slots = asyncio.Semaphore(500)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with slots:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b": connected\n\n")
            return reader, writer

    clients = await asyncio.gather(*(connect() for _ in range(SHUTDOWN_CLIENTS)))
    seconds = await asyncio.to_thread(server.terminate)
    endings = await asyncio.gather(*(_ending(reader) for reader, _ in clients))
    for _, writer in clients:
        writer.close()
    assert seconds < 2.0, f"exit took {seconds:.2f}s"
    assert endings.count("shutdown") == SHUTDOWN_CLIENTS, {
        e: endings.count(e) for e in set(endings)
    }
    assert server.proc is not None
    assert server.proc.returncode == 0
    assert "Traceback" not in server.log()
    print(f"SIGTERM with {SHUTDOWN_CLIENTS} clients: exited in {seconds:.3f}s")


async def _ending(reader: asyncio.StreamReader) -> str:
    async with asyncio.timeout(10):
        rest = await reader.read()
    if b"event: shutdown" in rest:
        return "shutdown"
    return "clean end" if rest.endswith(b"0\r\n\r\n") else "cut"
