"""Several instances on one real redis-server: real processes, and the backend
itself where a race needs a precise moment."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import aiohttp
import pytest
from redis.asyncio import Redis

from broadcaster.fanout.stores.redis import STREAM, RedisBackend
from broadcaster.wire.events import Event
from tests.conftest import (
    RedisServer,
    ServerFactory,
    ServerProcess,
    Stream,
    health,
    open_stream,
    wait_for,
)

QUIET = ("--tick-interval", "3600", "--heartbeat-interval", "3600")
TICK = 0.2


def instances(
    start: ServerFactory, redis: RedisServer, count: int, *args: str
) -> list[ServerProcess]:
    return [start("--redis-url", redis.url, *args) for _ in range(count)]


async def publish(session: aiohttp.ClientSession, base: str, data: str, topic: str = "t") -> str:
    async with session.post(f"{base}/publish", json={"topic": topic, "data": data}) as response:
        assert response.status == 200, await response.text()
        event_id: str = (await response.json())["id"]
        return event_id


async def subscribed(session: aiohttp.ClientSession, server: ServerProcess, count: int) -> None:
    async def ready() -> bool:
        body = await health(session, server.url)
        return body["clients"] == count and body["backend"] == {"name": "redis", "status": "up"}

    await wait_for(ready, 10, f"{count} client(s) on a healthy instance")


async def test_events_cross_instances_in_both_directions(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    a, b = instances(server_process, redis_server, 2, *QUIET)
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{a.url}/events?topic=t") as on_a,
        open_stream(session, f"{b.url}/events?topic=t") as on_b,
    ):
        await subscribed(session, a, 1)
        await subscribed(session, b, 1)
        first = await publish(session, a.url, "from a")
        second = await publish(session, b.url, "from b")
        for stream in (on_a, on_b):
            events = await stream.events(2)
            assert [(e.id, e.data) for e in events] == [(first, "from a"), (second, "from b")]
    assert re.fullmatch(r"\d+-\d+", first)


async def test_replay_on_another_instance(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    a, b = instances(server_process, redis_server, 2, *QUIET)
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, f"{a.url}/events?topic=t") as on_a:
            await subscribed(session, a, 1)
            read = [await publish(session, a.url, f"read {i}") for i in range(3)]
            assert [e.id for e in await on_a.events(3)] == read
        missed = []
        for i in range(4):
            missed.append(await publish(session, b.url, f"missed {i}"))
            await publish(session, a.url, "other topic", topic="other")
        headers = {"Last-Event-ID": read[-1]}
        async with open_stream(session, f"{b.url}/events?topic=t", headers) as on_b:
            replayed = await on_b.events(4)
            live = await publish(session, a.url, "live")
            after = await on_b.events(1)
    assert [e.id for e in replayed] == missed
    assert [e.data for e in replayed] == [f"missed {i}" for i in range(4)]
    assert after[0].id == live


async def ticks(stream: Stream, seconds: float) -> list[tuple[float, str]]:
    """(arrival time, id) of every tick in the next `seconds`."""
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                event = await stream.next_event()
        except TimeoutError:
            break
        if event.event == "tick":
            seen.append((time.monotonic(), event.id))
    return seen


def leader(servers: list[ServerProcess]) -> ServerProcess:
    leading = [
        s
        for s in servers
        if s.log().count("now leads the ticker") > s.log().count("no longer leads")
    ]
    assert len(leading) == 1, f"{len(leading)} leaders"
    return leading[0]


async def test_one_ticker_across_three_instances_and_failover(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    servers = instances(server_process, redis_server, 3, "--tick-interval", str(TICK))
    async with aiohttp.ClientSession() as session:

        async def one_leader() -> bool:
            return sum("now leads the ticker" in s.log() for s in servers) == 1

        await wait_for(one_leader, 10, "one instance to lead the ticker")
        current = leader(servers)
        watcher = next(s for s in servers if s is not current)
        async with open_stream(session, f"{watcher.url}/events") as stream:
            before = await ticks(stream, 2.0)
            assert current.proc is not None
            current.proc.kill()
            killed_at = time.monotonic()
            after = await ticks(stream, 3.0)
    ids = [tick_id for _, tick_id in before + after]
    assert len(ids) == len(set(ids)), "a tick was published twice"
    # One instance ticks: about 2.0 / 0.2 = 10 ticks, not 30.
    assert 7 <= len(before) <= 12, before
    gap = after[0][0] - killed_at
    assert gap < 10 * TICK, f"ticks resumed {gap:.2f}s after the leader died"
    assert len(after) >= 5


async def test_a_leader_stalled_past_its_lease_loses_it_and_stands_down(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    """The lease lapses while its holder is alive but frozen: another instance
    takes it, and the old leader, once it runs again, must not renew what is no
    longer its own."""
    servers = instances(server_process, redis_server, 2, "--tick-interval", str(TICK))
    async with aiohttp.ClientSession() as session:

        async def one_leader() -> bool:
            return sum("now leads the ticker" in s.log() for s in servers) == 1

        await wait_for(one_leader, 10, "one instance to lead the ticker")
        stalled = leader(servers)
        other = next(s for s in servers if s is not stalled)
        assert stalled.proc is not None

        async def taken_over() -> bool:
            return "now leads the ticker" in other.log()

        async def stood_down() -> bool:
            return "no longer leads the ticker" in stalled.log()

        stalled.proc.send_signal(signal.SIGSTOP)
        try:
            await wait_for(taken_over, 10, "the other instance to take the lapsed lease")
        finally:
            stalled.proc.send_signal(signal.SIGCONT)
        await wait_for(stood_down, 10, "the stalled leader to stand down")
        assert leader(servers) is other
        async with open_stream(session, f"{stalled.url}/events") as stream:
            after = await ticks(stream, 2.0)
    # One instance ticks: about 2.0 / 0.2 = 10 ticks, not 20.
    assert 7 <= len(after) <= 12, after


async def test_redis_restart_loses_nothing_acknowledged(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    (server,) = instances(server_process, redis_server, 1, *QUIET)
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=t") as stream,
    ):
        await subscribed(session, server, 1)
        acknowledged = [await publish(session, server.url, f"before {i}") for i in range(5)]
        redis_server.stop()
        async with session.post(
            f"{server.url}/publish", json={"topic": "t", "data": "x"}
        ) as response:
            assert response.status == 503
            assert "Redis is unreachable" in (await response.json())["error"]
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 503
            assert (await response.json())["backend"] == {"name": "redis", "status": "down"}
        redis_server.start()
        await subscribed(session, server, 1)  # the same stream stayed connected
        acknowledged += [await publish(session, server.url, f"after {i}") for i in range(3)]
        received = await stream.events(len(acknowledged), timeout=15)
        with pytest.raises(TimeoutError):  # and nothing twice
            async with asyncio.timeout(0.5):
                await stream.next_event()
    assert [e.id for e in received] == acknowledged
    log = server.log()
    assert log.count("Redis unavailable") == 1
    assert log.count("Redis connection restored") == 1


OUTAGE = 7.0
"""Long enough for a growing retry backoff to have reached seconds (0.1 s doubling
to 5 s, as it was, slept from 6.3 s to 11.3 s into an outage)."""
RECOVERY = 1.5


async def test_health_and_delivery_recover_as_soon_as_redis_answers(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    # Both instances are idle while Redis is away; only `publisher` is then used.
    publisher, idle = instances(server_process, redis_server, 2, *QUIET)
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{publisher.url}/events?topic=t") as on_publisher,
        open_stream(session, f"{idle.url}/events?topic=t") as on_idle,
    ):
        await subscribed(session, publisher, 1)
        await subscribed(session, idle, 1)
        redis_server.stop()

        async def both_down() -> bool:
            bodies = [await health(session, s.url) for s in (publisher, idle)]
            return all(b["backend"] == {"name": "redis", "status": "down"} for b in bodies)

        await wait_for(both_down, 10, "both instances to see Redis go away")
        await asyncio.sleep(OUTAGE)  # the outage itself: what is measured comes after it
        redis_server.start()
        back = time.monotonic()
        await publish(session, publisher.url, "after the restart")

        async def healthy(server: ServerProcess) -> float:
            async def up() -> bool:
                async with session.get(f"{server.url}/healthz") as response:
                    return response.status == 200

            await wait_for(up, 15, f"{server.url} to be healthy")
            return time.monotonic() - back

        async def delivered(stream: Stream) -> float:
            await stream.until(lambda e: e.data == "after the restart", timeout=15)
            return time.monotonic() - back

        lags = await asyncio.gather(
            healthy(publisher), delivered(on_publisher), healthy(idle), delivered(on_idle)
        )
    print(
        "\nafter Redis answered again: healthy, delivered (publisher, idle): "
        + ", ".join(f"{lag:.2f}s" for lag in lags)
    )
    assert all(lag < RECOVERY for lag in lags), lags


async def test_every_event_added_once_started_is_delivered(redis_server: RedisServer) -> None:
    """The reader's starting point is taken before `start` returns, i.e. before
    the app serves anyone; an event another instance adds just after must come."""
    other_instance = Redis.from_url(redis_server.url, decode_responses=True)
    await other_instance.xadd(STREAM, {"topic": "t", "data": "before"})
    backend = RedisBackend(redis_server.url, history=100, lease_seconds=3600)
    delivered: list[Event] = []
    try:
        await backend.start(delivered.extend)
        added = await other_instance.xadd(STREAM, {"topic": "t", "data": "just after"})

        async def arrived() -> bool:
            return bool(delivered)

        await wait_for(arrived, 5, "the event added just after start")
    finally:
        await backend.aclose()
        await other_instance.aclose()
    assert [(str(e.id), e.data) for e in delivered] == [(added, "just after")]


async def test_a_batch_is_one_round_trip_and_comes_back_in_one_delivery(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(redis_server.url, history=100, lease_seconds=3600)
    deliveries: list[list[Event]] = []
    try:
        await backend.start(lambda events: deliveries.append(list(events)))
        events = await backend.publish_many(
            [("t", "1", None, None), ("u", "2", "x", None), ("t", "3", None, None)]
        )

        async def arrived() -> bool:
            return bool(deliveries)

        await wait_for(arrived, 5, "the batch")
    finally:
        await backend.aclose()
    assert deliveries == [events]
    assert [(e.topic, e.data, e.type) for e in events] == [
        ("t", "1", None), ("u", "2", "x"), ("t", "3", None)
    ]  # fmt: skip
    assert events[0].id < events[1].id < events[2].id
