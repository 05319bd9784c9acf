"""Slow clients next to normal ones (issue 7): stalled clients that connect and
never read, beside normal clients at a brisk rate. The normal clients must lose
nothing, the stalled ones must be evicted, and the server's memory must stay
under the bound documented in docs/RELIABILITY.md.

tests/test_load.py runs it at a bounded scale, `python -m bench.slow_clients` at full scale.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from broadcaster.fanout.broker import HIGH_WATER
from tests.support.load_client import LoadClient

# A stalled socket's kernel buffers absorb ~2.8 MB here before the server's own
# buffers start to fill, so each stalled client must be sent more than that.
PAYLOAD = 16_000


@dataclass(frozen=True)
class Scenario:
    normal: int
    slow: int
    queue: int
    rate: int
    seconds: float

    def memory_bound_kib(self) -> float:
        """Per stalled client: its socket buffer up to the high-water mark, one
        frame written past it, and one full queue drained in a single write."""
        frame = PAYLOAD + 100
        return self.slow * (HIGH_WATER + frame + self.queue * frame) / 1024


def stalled_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /events?topic=bench HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


async def publish_padded(port: int, rate: int, seconds: float, before: int = 0) -> int:
    """Events of PAYLOAD bytes, starting "<seq> <ns>" for the load client;
    `before` events were published earlier. How many it published."""
    url = f"http://127.0.0.1:{port}/publish"
    sent = 0
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while sent < rate * seconds:
            sent += 1
            data = f"{before + sent} {time.time_ns()} " + "x" * PAYLOAD
            async with session.post(url, json={"topic": "bench", "data": data}) as response:
                if response.status != 200:
                    raise RuntimeError(f"publish answered {response.status}")
            await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
    return sent


async def evictions(session: aiohttp.ClientSession, base: str) -> float:
    async with session.get(f"{base}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("broadcaster_evictions_total "):
                return float(line.split()[1])
    raise RuntimeError("no evictions metric")


async def clients(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/healthz") as response:
        count: int = (await response.json())["clients"]
        return count


async def run(port: int, rss_kib: Any, scenario: Scenario) -> dict[str, Any]:
    """Against a server already listening on `port`; `rss_kib()` reads its RSS."""
    base = f"http://127.0.0.1:{port}"
    normal = await asyncio.to_thread(LoadClient, port, scenario.normal)
    slow: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as session:
            before = rss_kib()
            slow = [stalled_client(port) for _ in range(scenario.slow)]
            while await clients(session, base) < scenario.normal + scenario.slow:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(normal.ask, "report")
            published = await publish_padded(port, scenario.rate, scenario.seconds)
            # A loaded server coalesces events into fewer, larger frames, and a
            # stalled client's queue counts frames: it fills later. Go on, a
            # second at a time, until every stalled client is evicted.
            planned = published
            while await evictions(session, base) < scenario.slow and published < 4 * planned:
                published += await publish_padded(port, scenario.rate, 1.0, published)
            peak = rss_kib()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                count = await asyncio.to_thread(normal.ask, "count")
                if count["received"] >= published * scenario.normal:
                    break
                await asyncio.sleep(0.1)
            report = await asyncio.to_thread(normal.ask, "report")
            evicted = await evictions(session, base)
    finally:
        normal.close()
        for sock in slow:
            sock.close()
    return {
        "published": published,
        "normal_expected": published * scenario.normal,
        "normal_received": report["received"],
        "normal_closed": report["closed"],
        "normal_p99_ms": report["p99_ms"],
        "evicted": evicted,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "bound_kib": scenario.memory_bound_kib(),
    }
