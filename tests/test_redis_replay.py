"""Replay from real Redis while publishers race the reconnects: one client keeps
dropping its stream and resuming with `Last-Event-ID`, and in the end it has
received every event exactly once, in order.

The number of reconnects is `BROADCASTER_TEST_RECONNECTS` (default 40); the
counts are printed, so `BROADCASTER_TEST_RECONNECTS=1000 pytest -s` measures
duplicates per 1,000 reconnects.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from itertools import pairwise

import aiohttp

from broadcaster.wire.events import EventId
from tests.conftest import RedisServer, ServerFactory, Stream, open_stream, wait_for

RECONNECTS = int(os.environ.get("BROADCASTER_TEST_RECONNECTS", "40"))
PUBLISHERS = 4
QUIET = ("--tick-interval", "3600", "--heartbeat-interval", "3600", "--log-level", "WARNING")


@dataclass
class Tally:
    published: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    connections_with_duplicates: int = 0


async def publish_until(
    session: aiohttp.ClientSession, base: str, tally: Tally, stop: asyncio.Event
) -> None:
    """Publish back to back, one request at a time, until `stop`."""
    while not stop.is_set():
        async with session.post(f"{base}/publish", json={"topic": "t", "data": "x"}) as response:
            assert response.status == 200, await response.text()
            tally.published.append((await response.json())["id"])


async def read_for(stream: Stream, seconds: float) -> list[str]:
    """Ids of the events that arrive in the next `seconds`."""
    ids: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                ids.append((await stream.next_event()).id)
        except TimeoutError:
            break
    return ids


async def connect_and_read(session: aiohttp.ClientSession, url: str, tally: Tally) -> None:
    """One connection: resume from the last id received, read for a moment, drop."""
    headers = {"Last-Event-ID": tally.received[-1]} if tally.received else {}
    async with open_stream(session, url, headers) as stream:
        ids = await read_for(stream, random.uniform(0.05, 0.15))
    seen = [EventId.parse(i) for i in tally.received[-1:] + ids]
    if any(later <= earlier for earlier, later in pairwise(seen)):
        tally.connections_with_duplicates += 1
    tally.received += ids


async def test_replay_neither_repeats_nor_skips_while_publishing_flat_out(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    server = server_process("--redis-url", redis_server.url, *QUIET)
    url = f"{server.url}/events?topic=t"
    tally, stop = Tally(), asyncio.Event()
    async with aiohttp.ClientSession() as session:
        publishers = [
            asyncio.create_task(publish_until(session, server.url, tally, stop))
            for _ in range(PUBLISHERS)
        ]
        started = time.monotonic()
        try:
            for _ in range(RECONNECTS):
                await connect_and_read(session, url, tally)
        finally:
            stop.set()
            await asyncio.gather(*publishers)
        elapsed = time.monotonic() - started
        newest = max(tally.published, key=EventId.parse)

        async def caught_up() -> bool:
            await connect_and_read(session, url, tally)
            return tally.received[-1] == newest

        await wait_for(caught_up, 10, "the client to catch up with the last event")
    first = EventId.parse(tally.received[0])
    expected = sorted((i for i in tally.published if EventId.parse(i) >= first), key=EventId.parse)
    print(
        f"\n{RECONNECTS} reconnects in {elapsed:.1f}s, "
        f"{len(tally.published) / elapsed:.0f} events/s published: "
        f"{tally.connections_with_duplicates} connections with duplicates, "
        f"{len(tally.received) - len(set(tally.received))} duplicate events, "
        f"{len(set(expected) - set(tally.received))} missing"
    )
    assert tally.received == expected
