"""The Mercure endpoint against `python -m broadcaster`: the spec's examples,
on the memory store and on Redis, and the way into and out of native /events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest

from tests.conftest import RedisServer, ServerFactory, ServerProcess, Stream

SECRET = "mercure-secret-" + "m" * 40
HUB = "/.well-known/mercure"
DETAIL = "https://mercure.rocks/authorization-detail"
BOOKS = "https://example.com/books/:id"


def token(claims: dict[str, Any], ttl: float = 600) -> str:
    return jwt.encode({"exp": int(time.time() + ttl), **claims}, SECRET, algorithm="HS256")


def details(action: str, *topics: tuple[str, str]) -> dict[str, Any]:
    """A token's claims granting `action` on (match, match_type) pairs."""
    matchers = [{"match": match, "match_type": kind} for match, kind in topics]
    return {"authorization_details": [{"type": DETAIL, "actions": [action], "topics": matchers}]}


class Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: str


PUBLISHER = token(details("publish", ("*", "exact")))


@pytest.fixture(params=["memory", "redis"])
def server(
    request: pytest.FixtureRequest, server_process: ServerFactory, tmp_path: Path
) -> Iterator[ServerProcess]:
    args = ["--tick-interval", "3600", "--private-topics", "user.*"]
    redis = RedisServer(tmp_path / "redis").start() if request.param == "redis" else None
    if redis is not None:
        args += ["--redis-url", redis.url]
    yield server_process(*args, env={"BROADCASTER_JWT_SECRET": SECRET})
    if redis is not None:
        redis.stop()


@pytest.fixture
def memory_server(server_process: ServerFactory) -> ServerProcess:
    return server_process(
        "--tick-interval",
        "3600",
        "--private-topics",
        "user.*",
        env={"BROADCASTER_JWT_SECRET": SECRET},
    )


async def publish(
    session: aiohttp.ClientSession,
    base: str,
    fields: list[tuple[str, str]],
    bearer: str | None = PUBLISHER,
) -> Answer:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    async with session.post(f"{base}{HUB}", data=urlencode(fields), headers=headers) as answer:
        return Answer(answer.status, answer.headers, await answer.text())


async def published(session: aiohttp.ClientSession, base: str, *fields: tuple[str, str]) -> str:
    answer = await publish(session, base, list(fields))
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    return answer.body


@asynccontextmanager
async def subscribed(
    session: aiohttp.ClientSession,
    base: str,
    query: list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    async with session.get(f"{base}{HUB}?{urlencode(query)}", headers=headers) as response:
        assert response.status == 200, await response.text()
        stream = Stream(response)
        await stream.response.content.readuntil(b": connected\n\n")
        yield stream


async def test_an_update_reaches_mercure_and_native_subscribers_and_back(
    server: ServerProcess,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        subscribed(session, server.url, [("match", "news")]) as mercure,
        session.get(f"{server.url}/events?topic=news") as native,
    ):
        native_stream = Stream(native)
        await native.content.readuntil(b": connected\n\n")
        update_id = await published(
            session, server.url, ("topic", "news"), ("data", "from mercure")
        )
        async with session.post(
            f"{server.url}/publish", json={"topic": "news", "data": "from native"}
        ) as answer:
            assert answer.status == 200, await answer.text()
        got = await mercure.events(2)
        assert [e.data for e in got] == ["from mercure", "from native"]
        assert got[0].id == update_id
        assert [e.data for e in await native_stream.events(2)] == [
            "from mercure",
            "from native",
        ]


async def test_matchers_exact_urlpattern_and_alternate_topics(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        query = [("match_urlpattern", BOOKS), ("match_exact", "https://example.com/authors/1")]
        async with subscribed(session, server.url, query) as stream:
            await published(
                session, server.url, ("topic", "https://example.com/books/1"), ("data", "a")
            )
            await published(
                session,
                server.url,
                ("topic", "https://example.com/books/1/reviews"),
                ("data", "no"),
            )
            await published(
                session,
                server.url,
                ("topic", "https://example.com/shelves/9"),
                ("topic", "https://example.com/authors/1"),
                ("data", "b"),
                ("type", "moved"),
                ("retry", "1500"),
            )
            got = await stream.events(2)
            assert [e.data for e in got] == ["a", "b"]
            assert got[1].event == "moved"


async def test_private_updates_reach_only_subscribers_whose_token_covers_a_topic(
    server: ServerProcess,
) -> None:
    reader = token(details("subscribe", ("https://example.com/users/42/*", "urlpattern")))
    canonical, alternate = "https://example.com/books/1", "https://example.com/users/42/books/1"
    async with aiohttp.ClientSession() as session:
        query = [("match_urlpattern", BOOKS)]
        async with (
            subscribed(session, server.url, query) as anonymous,
            subscribed(session, server.url, query, {"Authorization": f"Bearer {reader}"}) as user,
            subscribed(
                session, server.url, query, {"Cookie": f"mercureAuthorization={reader}"}
            ) as cookie_user,
        ):
            await published(
                session, server.url, ("topic", canonical), ("private", ""), ("data", "secret")
            )
            await published(
                session,
                server.url,
                ("topic", canonical),
                ("topic", alternate),
                ("private", "on"),
                ("data", "shared"),
            )
            await published(session, server.url, ("topic", canonical), ("data", "public"))
            assert [e.data for e in await anonymous.events(1)] == ["public"]
            assert [e.data for e in await user.events(2)] == ["shared", "public"]
            assert [e.data for e in await cookie_user.events(2)] == ["shared", "public"]


async def test_a_private_update_on_a_native_topic_skips_native_streams_without_a_token(
    server: ServerProcess,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/events?topic=news") as native,
    ):
        stream = Stream(native)
        await native.content.readuntil(b": connected\n\n")
        await published(
            session, server.url, ("topic", "news"), ("private", "on"), ("data", "hidden")
        )
        await published(session, server.url, ("topic", "news"), ("data", "open"))
        assert [e.data for e in await stream.events(1)] == ["open"]


async def test_replay_by_custom_id_earliest_and_an_unknown_id(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        await published(session, server.url, ("topic", "t"), ("data", "one"), ("id", "urn:one"))
        await published(session, server.url, ("topic", "other"), ("data", "elsewhere"))
        hub_id = await published(session, server.url, ("topic", "t"), ("data", "two"))
        await published(session, server.url, ("topic", "t"), ("data", "three"))
        cases = [
            ({"Last-Event-ID": "urn:one"}, [], "urn:one", ["two", "three"]),
            ({}, [("last_event_id", hub_id)], hub_id, ["three"]),
            ({}, [("last_event_id", "earliest")], "earliest", ["one", "two", "three"]),
            ({"Last-Event-ID": "urn:nowhere"}, [], "earliest", ["one", "two", "three"]),
        ]
        for headers, extra, anchor, expected in cases:
            async with subscribed(session, server.url, [("match", "t"), *extra], headers) as stream:
                assert stream.response.headers["Mercure-Last-Event-ID"] == anchor
                assert [e.data for e in await stream.events(len(expected))] == expected
        async with subscribed(session, server.url, [("match", "t")]) as stream:
            assert "Mercure-Last-Event-ID" not in stream.response.headers


async def test_reserved_and_malformed_requests_are_400(memory_server: ServerProcess) -> None:
    base = memory_server.url
    bad_updates = [
        [("data", "no topic")],
        [("topic", "t"), ("type", "mercure")],
        [("topic", "t"), ("id", "#fragment")],
        [("topic", "t"), ("id", "earliest")],
        [("topic", "*")],
        [("topic", "/.well-known/%6Dercure/subscriptions")],
        [("topic", "https://hub.example/a/../.well-known/mercure/x")],
        [("topic", "t"), ("retry", "soon")],
        [("topic", "t\u200b")],
    ]
    bad_queries = [
        [("match_regex", ".*")],
        [("Matches", "t")],
        [],
        [("match_urlpattern", "/books/(")],
        [("match", "t\x01")],
    ]
    async with aiohttp.ClientSession() as session:
        for fields in bad_updates:
            answer = await publish(session, base, fields)
            assert answer.status == 400, fields
        for query in bad_queries:
            async with session.get(f"{base}{HUB}?{urlencode(query)}") as response:
                assert response.status == 400, query
                assert "error" in json.loads(await response.text())


async def test_refusals_follow_rfc_6750_and_publish_nothing(memory_server: ServerProcess) -> None:
    base = memory_server.url
    narrow = token(details("publish", ("https://example.com/a", "exact")))
    legacy = token({"mercure": {"publish": ["https://example.com/a"], "subscribe": []}})
    forged = jwt.encode({"exp": int(time.time() + 60)}, "x" * 40, algorithm="HS256")
    async with aiohttp.ClientSession() as session:
        async with subscribed(session, base, [("match", "*")]) as stream:
            fields = [("topic", "https://example.com/a"), ("topic", "https://example.com/b")]
            missing = await publish(session, base, fields, bearer=None)
            assert missing.status == 401
            assert missing.headers["WWW-Authenticate"] == 'Bearer realm="broadcaster"'
            # The spec forbids the query parameter /events takes: not suggested here.
            assert "Authorization: Bearer" in missing.body
            assert "access_token" not in missing.body
            invalid = await publish(session, base, fields, bearer=forged)
            assert invalid.status == 401
            assert 'error="invalid_token"' in invalid.headers["WWW-Authenticate"]
            for scoped in (narrow, legacy):
                refused = await publish(session, base, fields, bearer=scoped)
                assert refused.status == 403
                assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
            await published(session, base, ("topic", "https://example.com/a"), ("data", "ok"))
            assert [e.data for e in await stream.events(1)] == ["ok"]
        bad = {"Authorization": f"Bearer {forged}"}
        async with session.get(f"{base}{HUB}?match=x", headers=bad) as response:
            assert response.status == 401
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_the_page_and_the_hub_name_the_hub(memory_server: ServerProcess) -> None:
    link = '</.well-known/mercure>; rel="mercure"'
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{memory_server.url}/") as page:
            assert page.headers["Link"] == link
        async with subscribed(session, memory_server.url, [("match", "t")]) as stream:
            assert stream.response.headers["Link"] == link


async def test_mercure_off_leaves_no_hub_and_no_link(server_process: ServerFactory) -> None:
    server = server_process("--tick-interval", "3600", "--mercure", "off")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/") as page:
            assert page.status == 200
            assert "Link" not in page.headers
        async with session.get(f"{server.url}/.well-known/mercure?match=t") as hub:
            assert hub.status == 404
        async with session.post(f"{server.url}/.well-known/mercure", data={"topic": "t"}) as hub:
            assert hub.status == 404


async def test_mercure_streams_get_heartbeats_and_the_shutdown_event(
    server_process: ServerFactory,
) -> None:
    server = server_process("--tick-interval", "3600", "--heartbeat-interval", "0.2")
    async with (
        aiohttp.ClientSession() as session,
        subscribed(session, server.url, [("match_urlpattern", BOOKS)]) as stream,
    ):
        beat = await stream.response.content.readuntil(b"\n\n")
        assert beat.startswith(b":"), beat
        server.terminate()
        assert [e.event for e in await stream.rest()] == ["shutdown"]


async def test_a_native_stream_resumes_after_a_mercure_update_s_own_id(
    server: ServerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        await published(session, server.url, ("topic", "news"), ("data", "one"), ("id", "urn:x"))
        await published(session, server.url, ("topic", "news"), ("data", "two"))
        headers = {"Last-Event-ID": "urn:x"}
        async with session.get(f"{server.url}/events?topic=news", headers=headers) as native:
            assert [e.data for e in await Stream(native).events(1)] == ["two"]


async def test_a_private_update_crosses_instances_through_redis(
    server_process: ServerFactory, redis_server: RedisServer
) -> None:
    reader = token(details("subscribe", ("https://example.com/users/42/*", "urlpattern")))
    args = ("--tick-interval", "3600", "--redis-url", redis_server.url)
    env = {"BROADCASTER_JWT_SECRET": SECRET}
    one, two = server_process(*args, env=env), server_process(*args, env=env)
    canonical, alternate = "https://example.com/books/1", "https://example.com/users/42/books/1"
    async with (
        aiohttp.ClientSession() as session,
        subscribed(
            session, two.url, [("match_urlpattern", BOOKS)], {"Authorization": f"Bearer {reader}"}
        ) as stream,
    ):
        update_id = await published(
            session, one.url,
            ("topic", canonical), ("topic", alternate), ("private", "on"),
            ("id", "urn:crossing"), ("type", "book"), ("data", "across"),
        )  # fmt: skip
        [event] = await stream.events(1)
        assert (event.id, event.event, event.data) == (update_id, "book", "across")
        assert update_id == "urn:crossing"


async def test_native_private_topics_are_private_to_mercure_subscribers_too(
    memory_server: ServerProcess,
) -> None:
    native_token = token({"broadcaster": {"subscribe": ["user.1"], "publish": []}})
    query = [("match", "user.1"), ("match", "news")]
    async with (
        aiohttp.ClientSession() as session,
        subscribed(session, memory_server.url, query) as anonymous,
        subscribed(
            session, memory_server.url, query, {"Authorization": f"Bearer {native_token}"}
        ) as user,
    ):
        for topic in ("user.1", "news"):
            async with session.post(
                f"{memory_server.url}/publish", json={"topic": topic, "data": topic}
            ) as answer:
                assert answer.status == 200, await answer.text()
        assert [e.data for e in await anonymous.events(1)] == ["news"]
        assert [e.data for e in await user.events(2)] == ["user.1", "news"]
