"""POST /publish: every error is a clear JSON answer, and nothing bad gets through."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from broadcaster.app import create_app
from broadcaster.auth.tokens import mint
from broadcaster.ops.config import Settings
from broadcaster.ops.lag import KEEP
from broadcaster.web.keys import BROKER, LAG
from broadcaster.web.publish import is_loopback
from broadcaster.wire.events import EventId
from tests.conftest import front_door, open_stream
from tests.support.polling import until

TOKEN = "correct horse battery staple"
BASE = Settings(tick_interval=3600, heartbeat_interval=3600, max_event_bytes=1024)
Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def client(aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(replace(BASE, publish_token=TOKEN)))
    return result


async def post(client: Client, body: bytes | str, headers: dict[str, str]) -> tuple[int, Any]:
    async with client.post("/publish", data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_published_event_reaches_subscribers_with_its_id(client: Client) -> None:
    async with open_stream(client.session, str(client.make_url("/events?topic=orders"))) as stream:
        body = json.dumps({"topic": "orders", "event": "created", "data": "line 1\nline 2 ✓"})
        status, answer = await post(client, body, AUTH | JSON)
        assert status == 200
        (event,) = await stream.events(1)
    assert (event.id, event.event, event.data) == (answer["id"], "created", "line 1\nline 2 ✓")


@pytest.mark.parametrize(
    ("data", "sent"),
    [({"a": 1}, '{"a": 1}'), ([1, "x"], '[1, "x"]'), (3.5, "3.5"), (None, "null"), ("", "")],
)
async def test_non_string_json_data_is_sent_as_json_text(
    client: Client, data: Any, sent: str
) -> None:
    async with open_stream(client.session, str(client.make_url("/events?topic=t"))) as stream:
        status, _ = await post(client, json.dumps({"topic": "t", "data": data}), AUTH | JSON)
        assert status == 200
        assert (await stream.events(1))[0].data == sent


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("topic=t&data=hello+world&event=x", "application/x-www-form-urlencoded"),
        (
            '{"topic": "t", "data": "hello world", "event": "x"}',
            "application/x-www-form-urlencoded",
        ),
    ],
    ids=["form", "curl -d with JSON"],
)
async def test_form_bodies(client: Client, body: str, content_type: str) -> None:
    async with open_stream(client.session, str(client.make_url("/events?topic=t"))) as stream:
        status, _ = await post(client, body, AUTH | {"Content-Type": content_type})
        assert status == 200
        (event,) = await stream.events(1)
    assert (event.event, event.data) == ("x", "hello world")


LONG = "x" * 2000
BAD = [
    # (status, body, headers, words in the error)
    (401, '{"topic":"t","data":"x"}', JSON, "missing credentials"),
    (
        401,
        '{"topic":"t","data":"x"}',
        JSON | {"Authorization": f"Basic {TOKEN}"},
        "'Basic' credentials are not accepted",
    ),
    (
        403,
        '{"topic":"t","data":"x"}',
        JSON | {"Authorization": "Bearer nope"},
        "wrong publish token",
    ),
    (415, "hello", AUTH | {"Content-Type": "text/plain"}, "Content-Type must be"),
    (413, json.dumps({"topic": "t", "data": LONG}), AUTH | JSON, "exceeds the limit of 1024"),
    (400, "{not json", AUTH | JSON, "not valid JSON"),
    (400, "[1, 2]", AUTH | JSON, "must be a JSON object"),
    (400, b'{"topic":"t","data":"\xff"}', AUTH | JSON, "not UTF-8"),
    (400, '{"data":"x"}', AUTH | JSON, "'topic' is required"),
    (400, '{"topic":"t"}', AUTH | JSON, "'data' is required"),
    (400, '{"topic":"a b","data":"x"}', AUTH | JSON, "invalid topic"),
    (400, json.dumps({"topic": "t" * 65, "data": "x"}), AUTH | JSON, "1 to 64 characters"),
    (400, '{"topic":"t","data":"x","event":"a\\nb"}', AUTH | JSON, "must not contain CR, LF"),
    (400, '{"topic":"t","data":"x","event":"a\\rb"}', AUTH | JSON, "must not contain CR, LF"),
    (400, '{"topic":"t","data":"x","event":"shutdown"}', AUTH | JSON, "reserved"),
    (400, '{"topic":"t","data":"x","event":"reauth"}', AUTH | JSON, "reserved"),
    (400, '{"topic":"t","data":"x","event":""}', AUTH | JSON, "1 to 64 characters"),
    (400, '{"topic":"t","data":"\\ud800"}', AUTH | JSON, "lone surrogate"),
    (400, '{"topic":"t","data":"x","colour":"red"}', AUTH | JSON, "unknown field(s): colour"),
    (
        400,
        "topic=t&topic=u&data=x",
        AUTH | {"Content-Type": "application/x-www-form-urlencoded"},
        "more than once",
    ),
]


@pytest.mark.parametrize(("status", "body", "headers", "words"), BAD)
async def test_bad_requests_get_a_clear_json_error_and_publish_nothing(
    client: Client, status: int, body: str | bytes, headers: dict[str, str], words: str
) -> None:
    got, answer = await post(client, body, headers)
    assert (got, answer["status"]) == (status, status)
    assert words in answer["error"]
    assert sum(client.app[BROKER].stats.published.values()) == 0
    # ... and the server keeps serving afterwards.
    ok, _ = await post(client, '{"topic":"t","data":"fine"}', AUTH | JSON)
    assert ok == 200


async def test_chunked_body_over_the_limit_is_413(client: Client) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 200

    async with client.post("/publish", data=chunks(), headers=AUTH | JSON) as response:
        assert response.status == 413
    assert sum(client.app[BROKER].stats.published.values()) == 0


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    async with client.get("/nope") as response:
        assert response.status == 404
        assert (await response.json())["status"] == 404
    async with client.get("/publish") as response:
        assert response.status == 405
        assert set(response.headers["Allow"].split(",")) == {"POST", "OPTIONS"}


async def test_without_a_token_loopback_may_publish(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(BASE))
    status, answer = await post(client, '{"topic":"t","data":"x"}', JSON)
    assert status == 200, answer
    assert client.app[BROKER].stats.published == {"t": 1}
    # The store's newest id is the one the answer gave.
    replay = await client.app[BROKER].replay(EventId.parse(answer["id"]), ["t"])
    assert (replay.complete, str(replay.newest)) == (True, answer["id"])


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        ("::ffff:8.8.8.8", False),
        ("::ffff:127.0.0.1", True),
        (None, False),
        ("unix", False),
    ],
)
def test_loopback_rule(remote: str | None, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


async def test_without_a_token_a_remote_client_is_refused(aiohttp_client: Any) -> None:
    app = create_app(BASE)

    @web.middleware
    async def pretend_remote(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request.clone(remote="203.0.113.9"))
        return response

    app.middlewares.insert(0, pretend_remote)
    client = await aiohttp_client(app)
    status, answer = await post(client, '{"topic":"t","data":"x"}', JSON)
    assert status == 403
    assert "only loopback clients may publish" in answer["error"]


NDJSON = {"Content-Type": "application/x-ndjson"}
BATCH = [
    {"topic": "t", "data": "one"},
    {"topic": "u", "data": {"n": 2}, "event": "counted"},
    {"topic": "t", "data": "three\nlines"},
]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (json.dumps(BATCH), AUTH | JSON),
        ("\n".join(json.dumps(item) for item in BATCH) + "\n\n", AUTH | NDJSON),
        (json.dumps(BATCH), AUTH | {"Content-Type": "application/x-www-form-urlencoded"}),
    ],
    ids=["json array", "ndjson", "curl -d with a JSON array"],
)
async def test_a_batch_is_published_in_order_and_its_ids_come_back_in_order(
    client: Client, body: str, headers: dict[str, str]
) -> None:
    url = str(client.make_url("/events?topic=t&topic=u"))
    async with open_stream(client.session, url) as stream:
        status, answer = await post(client, body, headers)
        assert status == 200, answer
        got = await stream.events(3)
    assert [(e.id, e.event, e.data) for e in got] == [
        (answer["ids"][0], "message", "one"),
        (answer["ids"][1], "counted", '{"n": 2}'),
        (answer["ids"][2], "message", "three\nlines"),
    ]
    ids = [EventId.parse(i) for i in answer["ids"]]
    assert [i.seq - ids[0].seq for i in ids] == [0, 1, 2]


OK = {"topic": "t", "data": "ok"}
BAD_BATCHES = [
    # (status, body, headers, words in the error)
    (400, [OK, {"topic": "t"}], JSON, "item 2: field 'data' is required"),
    (400, [OK, "hello"], JSON, "item 2: must be a JSON object"),
    (400, [OK, {"topic": "a b", "data": "x"}], JSON, "item 2: invalid topic"),
    (400, [], JSON, "the batch is empty"),
    (413, [OK, {"topic": "t", "data": LONG}], JSON, "item 2: event exceeds"),
    (400, '{"topic":"t","data":"ok"}\n\n{"topic":"t","event":"shutdown","data":"x"}', NDJSON,
     "item 2 (line 3): event type 'shutdown' is reserved"),
    (400, '{"topic":"t","data":"ok"}\n{oops', NDJSON, "line 2 is not valid JSON"),
    (400, "\n\n", NDJSON, "the batch is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "words"), BAD_BATCHES)
async def test_a_bad_item_refuses_the_whole_batch_and_names_it(
    client: Client, status: int, body: Any, headers: dict[str, str], words: str
) -> None:
    sent = body if isinstance(body, str | bytes) else json.dumps(body)
    got, answer = await post(client, sent, AUTH | headers)
    assert (got, answer["status"]) == (status, status)
    assert words in answer["error"]
    assert sum(client.app[BROKER].stats.published.values()) == 0


async def test_the_body_limit_is_max_publish_bytes(aiohttp_client: Any) -> None:
    app = create_app(replace(BASE, publish_token=TOKEN, max_publish_bytes=3000))
    client = await aiohttp_client(app)
    fits = json.dumps([{"topic": "t", "data": "x" * 1000}] * 2)
    too_big = json.dumps([{"topic": "t", "data": "x" * 1000}] * 3)

    async def chunked(body: str) -> Any:
        yield body.encode()

    status, answer = await post(client, fits, AUTH | JSON)
    assert (status, len(answer["ids"])) == (200, 2)
    for body in (too_big, chunked(too_big)):  # with a Content-Length, and without
        async with client.post("/publish", data=body, headers=AUTH | JSON) as response:
            assert response.status == 413
            assert (
                "exceeds the limit of 3000 bytes (--max-publish-bytes)"
                in (await response.json())["error"]
            )
    assert sum(client.app[BROKER].stats.published.values()) == 2


def stall_the_loop(seconds: float) -> None:
    """Block the loop, as fan-outs that it cannot keep up with do."""
    time.sleep(seconds)


async def test_publishing_is_refused_while_the_loop_runs_later_than_the_bound(
    aiohttp_client: Any,
) -> None:
    app = create_app(replace(BASE, publish_token=TOKEN, max_publish_lag_ms=50))
    client = await aiohttp_client(app)
    lag = app[LAG]
    assert not lag.measuring  # nobody publishes yet: the loop is left alone
    status, _ = await post(client, '{"topic":"t","data":"x"}', AUTH | JSON)
    assert status == 200
    await until(lambda: lag.measuring, 10)
    stall_the_loop(0.2)
    async with client.post("/publish", json={"topic": "t", "data": "x"}, headers=AUTH) as late:
        assert (late.status, late.headers["Retry-After"]) == (503, "1")
        assert "too busy: events wait" in (await late.json())["error"]
    assert sum(app[BROKER].stats.published.values()) == 1
    await until(lambda: lag.seconds() <= 0.05, 10)
    status, _ = await post(client, '{"topic":"t","data":"x"}', AUTH | JSON)
    assert status == 200
    async with client.get("/metrics") as response:
        metrics = await response.text()
    assert "broadcaster_publish_throttled_total 1.0" in metrics
    assert "broadcaster_publish_backlog 0.0" in metrics
    assert re.search(r"^broadcaster_publish_lag_seconds \d", metrics, re.M)


async def test_the_loop_is_timed_only_while_publishing_goes_on(aiohttp_client: Any) -> None:
    app = create_app(replace(BASE, publish_token=TOKEN, max_publish_lag_ms=50))
    client = await aiohttp_client(app)
    lag = app[LAG]
    status, _ = await post(client, '{"topic":"t","data":"x"}', AUTH | JSON)
    assert status == 200
    await until(lambda: lag.measuring, 5)  # started by the publish
    # An idle server's loop is not woken 100 times a second for nobody.
    await until(lambda: not lag.measuring, 5)
    assert lag.seconds() == 0.0


async def test_a_stall_longer_than_the_probe_s_keep_is_still_seen(aiohttp_client: Any) -> None:
    app = create_app(replace(BASE, publish_token=TOKEN, max_publish_lag_ms=50))
    client = await aiohttp_client(app)
    status, _ = await post(client, '{"topic":"t","data":"x"}', AUTH | JSON)
    assert status == 200
    await until(lambda: app[LAG].measuring, 10)
    stall_the_loop(KEEP + 0.5)  # past the second the probe keeps timing after a publish
    status, answer = await post(client, '{"topic":"t","data":"late"}', AUTH | JSON)
    assert status == 503, answer


async def test_a_batch_with_one_topic_the_token_does_not_cover_publishes_nothing(
    aiohttp_client: Any,
) -> None:
    secret = "batch-secret-" + "k" * 40
    client = await aiohttp_client(create_app(replace(BASE, jwt_secret=secret)))
    token = {"Authorization": f"Bearer {mint(secret, [], ['chat.*'], ttl=60)}"}
    batch = json.dumps([{"topic": "chat.1", "data": "a"}, {"topic": "news", "data": "b"}])
    status, answer = await post(client, batch, token | JSON)
    assert status == 403
    assert answer["error"] == "item 2: the token does not allow publishing to 'news'"
    assert sum(client.app[BROKER].stats.published.values()) == 0
    status, answer = await post(client, batch.replace("news", "chat.2"), token | JSON)
    assert (status, len(answer["ids"])) == (200, 2)


async def test_a_publish_that_waited_behind_pipelined_requests_past_the_bound_is_refused() -> None:
    app = create_app(replace(BASE, max_publish_lag_ms=100))
    body = b'{"topic":"t","data":"late"}'
    pipelined = (
        # Slow work that leaves the loop free: only the publish queued behind it waits.
        b"GET /long?rows=2&step=1&delay=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
    )
    async with front_door(app) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", URL(site.name).port)
        writer.write(pipelined)
        answers = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    last = answers.rsplit(b"HTTP/1.1 ", 1)[1]
    assert last.startswith(b"503 ")
    assert b"Retry-After: 1\r\n" in last
    assert b"too busy: events wait" in last
    assert sum(app[BROKER].stats.published.values()) == 0


SLOW = b"GET /long?rows=2&step=1&delay=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
CHEAP = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
LAST_PUBLISH = (
    b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 27\r\nConnection: close\r\n\r\n{"topic":"t","data":"late"}'
)


async def test_a_publish_left_unparsed_past_aiohttp_s_queue_counts_its_wait_from_its_read() -> None:
    """aiohttp parses at most 32 pipelined requests ahead: the rest wait in its
    buffer, and their wait counts from when their bytes came, not from when
    they were parsed, or a publisher pipelining past the queue is never throttled."""
    app = create_app(replace(BASE, max_publish_lag_ms=100))
    async with front_door(app) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", URL(site.name).port)
        writer.write(SLOW + CHEAP * 60 + LAST_PUBLISH)
        answers = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answers.count(b"HTTP/1.1 200 ") == 61
    assert answers.rsplit(b"HTTP/1.1 ", 1)[1].startswith(b"503 ")
    assert sum(app[BROKER].stats.published.values()) == 0


async def test_each_request_read_in_one_go_is_dated_by_when_its_own_bytes_came() -> None:
    """A publish that came early, and requests that came later, read together
    once aiohttp's queue drains: the publish's wait counts from when it came,
    not from when the last of them did."""
    app = create_app(replace(BASE, max_publish_lag_ms=400))
    async with front_door(app) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", URL(site.name).port)
        writer.write(SLOW + CHEAP * 40)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(LAST_PUBLISH.replace(b"Connection: close", b"X-Early: 1"))
        # Not synchronisation: what comes 0.4 s into the slow request's 0.6 s
        # must not make the publish before it look 0.4 s younger than it is.
        await asyncio.sleep(0.4)
        writer.write(CHEAP + LAST_PUBLISH)
        answers = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answers.count(b"HTTP/1.1 200 ") == 42
    assert answers.count(b"HTTP/1.1 503 ") == 1
    assert sum(app[BROKER].stats.published.values()) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
async def test_a_body_that_came_in_pieces_does_not_age_the_requests_after_it(
    chunked: bool,
) -> None:
    """Requests are dated by their sizes: a body read in pieces must not leave
    the reckoning behind the stream, or the next publish, on an idle server,
    would be dated by when the body came and refused."""
    app = create_app(replace(BASE, max_publish_lag_ms=100, max_event_bytes=64 * 1024))
    body = json.dumps({"topic": "t", "data": "x" * 20_000}).encode()
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    head = b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    first, rest = body[:100], body[100:]
    if chunked:
        first, rest = b"%x\r\n" % len(body) + first, rest + b"\r\n0\r\n\r\n"
    async with front_door(app) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", URL(site.name).port)
        # The scenario's pauses: the body's start, its rest, then an idle
        # connection before the next publish.
        writer.write(head + framing + b"\r\n\r\n" + first)
        await asyncio.sleep(0.1)
        writer.write(rest)
        first_answer = await asyncio.wait_for(reader.readuntil(b"}"), 10)
        assert first_answer.startswith(b"HTTP/1.1 200 "), first_answer
        await asyncio.sleep(0.3)
        writer.write(LAST_PUBLISH)
        answers = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answers.startswith(b"HTTP/1.1 200 "), answers[:300]
    assert sum(app[BROKER].stats.published.values()) == 2


async def test_a_publish_that_came_while_reading_was_paused_counts_its_wait_from_then() -> None:
    """While aiohttp's queue is full it reads nothing, and what comes meanwhile
    waits in the kernel: that wait counts too."""
    app = create_app(replace(BASE, max_publish_lag_ms=100))
    async with front_door(app) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", URL(site.name).port)
        writer.write(SLOW + CHEAP * 40)
        # The slow request's head: the 40 behind it fill aiohttp's queue, so
        # the connection is not read until the slow one (0.6 s) is done.
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(LAST_PUBLISH)
        answers = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answers.count(b"HTTP/1.1 200 ") == 40
    assert answers.rsplit(b"HTTP/1.1 ", 1)[1].startswith(b"503 ")
    assert sum(app[BROKER].stats.published.values()) == 0
