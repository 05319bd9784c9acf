"""Replay as a property: however publishing interleaves with drops and reconnects,
the client ends with exactly the published sequence of its topics.

It runs through aiohttp's handler (`stream.events`), and through the front door
that `python -m broadcaster` puts before it, which serves a fresh connection's
`GET /events` itself; each with the in-memory backend and with a real
redis-server, where a replay is read from the stream while publishes land."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster.app import create_app
from broadcaster.edge.front_door import FrontDoor
from broadcaster.ops.config import Settings
from broadcaster.web.keys import BROKER
from tests.conftest import RedisServer, Stream, front_door

MINE = ("a", "b")
TOPICS = ("a", "b", "other")

Op = tuple[str, str | int]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(TOPICS)),
        st.tuples(st.just("read"), st.integers(0, 4)),
        st.tuples(st.just("reconnect"), st.just(0)),
        st.tuples(st.just("reconnect-while-publishing"), st.sampled_from(TOPICS)),
    ),
    max_size=30,
)


@dataclass
class Client:
    http: aiohttp.ClientSession
    app: aiohttp.web.Application
    door: FrontDoor | None
    stream: Stream | None = None
    published: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)

    async def connect(self) -> None:
        if self.stream is not None:
            self.stream.response.close()
        query = "&".join(f"topic={t}" for t in MINE)
        headers = {"Last-Event-ID": self.received[-1]} if self.received else {}
        self.stream = Stream(await self.http.get(f"/events?{query}", headers=headers))
        # The path under test is the one that served the stream.
        assert self.door is None or len(self.door.streams) == 1

    async def publish(self, topic: str) -> None:
        event = await self.app[BROKER].publish(topic, f"on {topic}")
        if topic in MINE:
            self.published.append(str(event.id))

    async def read(self, count: int) -> None:
        assert self.stream is not None
        count = min(count, len(self.published) - len(self.received))
        events = await self.stream.events(count, timeout=5)
        assert all(e.event == "message" for e in events), events
        self.received += [e.id for e in events]


@pytest.fixture(scope="module", params=["memory", "redis"])
def redis_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str | None]:
    """None for the in-memory backend; else one redis-server for every example."""
    if request.param == "memory":
        yield None
        return
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server.url
    server.stop()


@asynccontextmanager
async def serving(path: str, redis_url: str | None) -> AsyncIterator[Client]:
    settings = Settings(
        tick_interval=3600, heartbeat_interval=3600, history=1000, redis_url=redis_url
    )
    app = create_app(settings)
    if path == "aiohttp":
        async with TestServer(app) as server, aiohttp.ClientSession(server.make_url("")) as http:
            yield Client(http, app, None)
    else:
        async with front_door(app) as site, aiohttp.ClientSession(site.name) as http:
            yield Client(http, app, site.door)


async def run(path: str, redis_url: str | None, ops: list[Op]) -> Client:
    async with serving(path, redis_url) as client:
        await client.connect()
        await client.publish("a")  # so the client always has an id to resume from
        await client.read(1)
        for op, arg in ops:
            if op == "publish":
                await client.publish(str(arg))
            elif op == "read":
                await client.read(int(arg))
            elif op == "reconnect":
                await client.connect()
            else:
                await asyncio.gather(client.connect(), client.publish(str(arg)))
        await client.read(len(client.published))
        assert client.stream is not None
        client.stream.response.close()
        return client


@pytest.mark.parametrize("path", ["aiohttp", "front door"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_no_gap_no_duplicate_in_order(path: str, redis_url: str | None, ops: list[Op]) -> None:
    client = asyncio.run(run(path, redis_url, ops))
    assert client.received == client.published
