"""The benchmark's load client counts and times what it receives correctly: if it
miscounted, every loss and latency figure in docs/PERFORMANCE.md would be wrong."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.conftest import ServerFactory, health, wait_for
from tests.support.load_client import BUILD, LoadClient, build

CLIENTS = 40
MESSAGES = 25


async def test_load_client_receives_every_message_with_its_latency(
    server_process: ServerFactory,
) -> None:
    await asyncio.to_thread(build)
    server = server_process("--tick-interval", "3600", "--log-level", "WARNING")
    client = await asyncio.to_thread(LoadClient, server.port, CLIENTS)
    try:
        assert client.ready["established"] == CLIENTS
        async with aiohttp.ClientSession() as session:

            async def all_subscribed() -> bool:
                return (await health(session, server.url))["clients"] == CLIENTS

            await wait_for(all_subscribed, 10, "the load client's connections")
            for seq in range(1, MESSAGES + 1):
                body = {"topic": "bench", "data": f"{seq} {time.time_ns()}"}
                async with session.post(f"{server.url}/publish", json=body) as response:
                    assert response.status == 200
            # One that is not a bench message: it must not be counted.
            other = {"topic": "bench", "data": "x"}
            async with session.post(f"{server.url}/publish", json=other) as response:
                assert response.status == 200

        async def all_received() -> bool:
            count = await asyncio.to_thread(client.ask, "count")
            return bool(count["received"] == CLIENTS * MESSAGES)

        await wait_for(all_received, 10, "every message to reach the load client")
        report = await asyncio.to_thread(client.ask, "report")
    finally:
        client.close()
    assert report["min_per_conn"] == MESSAGES
    assert report["samples"] == CLIENTS * MESSAGES
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"] < 5_000


async def test_the_pipelining_publisher_sends_and_counts_every_event(
    server_process: ServerFactory,
) -> None:
    """Batches of 4 at 400 events/s for 1 s: 100 requests, every answer counted,
    and the load client times each event from the stamp the publisher put in."""
    await asyncio.to_thread(build)
    server = server_process("--tick-interval", "3600", "--log-level", "WARNING")
    client = await asyncio.to_thread(LoadClient, server.port, CLIENTS)
    try:
        async with aiohttp.ClientSession() as session:

            async def all_subscribed() -> bool:
                return (await health(session, server.url))["clients"] == CLIENTS

            await wait_for(all_subscribed, 10, "the load client's connections")
        proc = await asyncio.create_subprocess_exec(
            str(BUILD / "publisher"), "127.0.0.1", str(server.port), "400", "1", "4", "2", "bench",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        sent = json.loads(out)

        async def all_received() -> bool:
            count = await asyncio.to_thread(client.ask, "count")
            return bool(count["received"] == CLIENTS * 400)

        await wait_for(all_received, 10, "every event to reach the load client")
        report = await asyncio.to_thread(client.ask, "report")
    finally:
        client.close()
    assert (proc.returncode, sent["events"], sent["requests"]) == (0, 400, 100)
    assert (sent["ok"], sent["ok_events"], sent["unanswered"]) == (100, 400, 0)
    assert report["min_per_conn"] == 400
    assert 0 < report["p50_ms"] <= report["p99_ms"] < 5_000
