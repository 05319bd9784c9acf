"""The library API: broadcaster inside an aiohttp application of one's own."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request, unused_port

import broadcaster
from broadcaster.wire.topics import InvalidTopic
from tests.conftest import open_stream, wait_for

ROOT = Path(__file__).resolve().parent.parent
QUIET = broadcaster.Settings(tick_interval=3600, heartbeat_interval=3600, history=5)
Client = TestClient[web.Request, web.Application]
USER = web.RequestKey("user", str)


@web.middleware
async def require_user(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The application's own auth: broadcaster's routes under /sse stay open."""
    if request.path.startswith("/sse/"):
        return await handler(request)
    user = request.headers.get("X-User", "")
    if not user.isalnum():
        raise web.HTTPUnauthorized(text="who are you? send X-User")
    request[USER] = user
    return await handler(request)


async def my_events(request: web.Request) -> web.StreamResponse:
    return await broadcaster.events_response(request, topics=[f"user.{request[USER]}"])


async def place_order(request: web.Request) -> web.Response:
    event = await request.app[broadcaster.BROKER].publish(
        "orders", await request.text(), event="order"
    )
    return web.json_response({"id": str(event.id)})


def my_app(settings: broadcaster.Settings = QUIET, **options: Any) -> web.Application:
    app = web.Application(middlewares=[require_user])
    app.router.add_get("/my-events", my_events)
    app.router.add_post("/orders", place_order)
    broadcaster.setup(app, settings, **options)
    return app


@pytest.fixture
async def client(aiohttp_client: Any) -> Client:
    made: Client = await aiohttp_client(my_app())
    return made


def url(client: Client, path: str) -> str:
    return str(client.make_url(path))


async def test_setup_mounts_stream_publish_health_and_metrics_under_the_prefix(
    client: Client,
) -> None:
    async with open_stream(client.session, url(client, "/sse/events?topic=t")) as stream:
        async with client.post("/sse/publish", json={"topic": "t", "data": "hi"}) as response:
            assert response.status == 200
            sent = (await response.json())["id"]
        [event] = await stream.events(1)
        assert (event.id, event.data) == (sent, "hi")
        async with client.get("/sse/healthz") as response:
            assert (await response.json())["clients"] == 1
    async with client.get("/sse/metrics") as response:
        assert "broadcaster_events_published_total" in await response.text()
    # Nothing at the root, and the application's own answers stay its own:
    # broadcaster's JSON error bodies apply to its routes only.
    async with client.get("/events", headers={"X-User": "ann"}) as response:
        assert (response.status, response.content_type) == (404, "text/plain")
    async with client.get("/sse/nope") as response:
        assert (response.status, response.content_type) == (404, "application/json")


async def test_a_handler_of_the_application_publishes_and_gets_the_id(client: Client) -> None:
    async with open_stream(client.session, url(client, "/sse/events?topic=orders")) as stream:
        async with client.post("/orders", data="2 pens", headers={"X-User": "ann"}) as response:
            sent = (await response.json())["id"]
        [event] = await stream.events(1)
    assert (event.id, event.event, event.data) == (sent, "order", "2 pens")


async def test_events_response_streams_the_topics_the_handler_chooses_behind_its_auth(
    client: Client,
) -> None:
    async with client.get("/my-events") as response:
        assert response.status == 401  # the application's middleware said so
    broker = client.app[broadcaster.BROKER]
    # The query cannot widen what the handler chose.
    mine = url(client, "/my-events?topic=user.bob")
    async with open_stream(client.session, mine, {"X-User": "ann"}) as stream:
        await broker.publish("user.bob", "for bob")
        sent = await broker.publish("user.ann", "for ann")
        [event] = await stream.events(1)
    assert (event.id, event.data) == (str(sent.id), "for ann")


async def test_events_response_replays_then_ends_with_shutdown(client: Client) -> None:
    broker = client.app[broadcaster.BROKER]
    ids = [str((await broker.publish("user.ann", str(i))).id) for i in range(3)]
    headers = {"X-User": "ann", "Last-Event-ID": ids[0]}
    async with open_stream(client.session, url(client, "/my-events"), headers) as stream:
        assert [e.id for e in await stream.events(2)] == ids[1:]
        live = str((await broker.publish("user.ann", "live")).id)
        assert [e.id for e in await stream.events(1)] == [live]
        await client.app.shutdown()
        assert [e.event for e in await stream.rest()] == ["shutdown"]


async def test_a_bad_topic_from_the_handler_is_a_400_saying_why(aiohttp_client: Any) -> None:
    async def bad(request: web.Request) -> web.StreamResponse:
        return await broadcaster.events_response(request, topics=["no spaces"])

    app = web.Application()
    app.router.add_get("/bad", bad)
    broadcaster.setup(app, QUIET)
    client: Client = await aiohttp_client(app)
    async with client.get("/bad") as response:
        assert response.status == 400
        assert "invalid topic 'no spaces'" in (await response.json())["error"]


async def served(app: web.Application) -> tuple[web.AppRunner, int]:
    """`app` served the way `web.run_app` serves it: aiohttp does not cancel
    the handler of a client that leaves (TestServer always would)."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_a_client_that_leaves_is_unsubscribed_though_aiohttp_does_not_cancel() -> None:
    app = my_app()
    broker = app[broadcaster.BROKER]
    runner, port = await served(app)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /sse/events?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b": connected\n\n"), 5)
        assert broker.client_count == 1
        writer.close()
        await writer.wait_closed()

        async def gone() -> bool:
            await broker.publish("t", "anyone there?")
            return broker.client_count == 0

        await wait_for(gone, 5, "the departed client to be unsubscribed")
    finally:
        await runner.cleanup()


async def test_an_embedded_client_that_stops_reading_is_evicted() -> None:
    app = my_app(broadcaster.Settings(tick_interval=3600, heartbeat_interval=3600, queue_size=4))
    broker = app[broadcaster.BROKER]
    runner, port = await served(app)
    try:
        with socket.socket() as slow:
            # A tiny receive window, and no reads: the server's writes back up fast.
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.setblocking(False)
            await asyncio.get_running_loop().sock_connect(slow, ("127.0.0.1", port))
            slow.sendall(b"GET /sse/events?topic=big HTTP/1.1\r\nHost: x\r\n\r\n")
            async with (
                aiohttp.ClientSession() as session,
                open_stream(session, f"http://127.0.0.1:{port}/sse/events?topic=big") as fast,
            ):
                await wait_for(_count_is(broker, 2), 5, "both clients")

                async def evicted() -> bool:
                    await broker.publish("big", "x" * 32_000)
                    await fast.next_event()
                    return broker.stats.evictions == 1

                await wait_for(evicted, 10, "the slow client's eviction")
                assert broker.client_count == 1
                after = await broker.publish("big", "after")
                assert (await fast.until(lambda e: e.data == "after"))[-1].id == str(after.id)
    finally:
        await runner.cleanup()


def _count_is(broker: broadcaster.Broker, count: int) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return broker.client_count == count

    return reached


async def test_the_ticker_and_jobs_are_off_unless_asked_for(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    plain: Client = await aiohttp_client(my_app())
    assert "ticker" not in {task.get_name() for task in asyncio.all_tasks()}
    async with plain.get("/sse/jobs") as response:
        assert response.status == 404
    await plain.close()
    settings = broadcaster.Settings(tick_interval=0.05, heartbeat_interval=3600, data_dir=tmp_path)
    full: Client = await aiohttp_client(my_app(settings, ticker=True, jobs=True))
    async with full.get("/sse/jobs") as response:
        assert (response.status, await response.json()) == (200, {"jobs": []})
    async with open_stream(full.session, url(full, "/sse/events")) as stream:
        [tick] = await stream.events(1)
    assert tick.event == "tick"


@pytest.mark.parametrize(
    ("prefix", "says"),
    [
        ("sse", "prefix 'sse' is not a path such as '/sse'"),
        ("/", "prefix '/' is not a path such as '/sse'"),
    ],
)
def test_setup_refuses_a_prefix_that_is_not_a_path(prefix: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        broadcaster.setup(web.Application(), prefix=prefix)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            broadcaster.Settings(private_topics="user.*"),  # type: ignore[arg-type]
            "Settings(private_topics='user.*'): must be a tuple",
        ),
        (broadcaster.Settings(queue_size=-1), "Settings(queue_size=-1)"),
        (broadcaster.Settings(tick_interval=0), "Settings(tick_interval=0)"),
        (broadcaster.Settings(queue_size="10"), "Settings(queue_size='10'): must be int"),  # type: ignore[arg-type]
        (broadcaster.Settings(cors_origins=("app.example",)), "is not an origin"),
        (broadcaster.Settings(private_topics=("user.*",)), "--private-topics needs a key"),
    ],
)
def test_setup_refuses_settings_its_flags_would(settings: broadcaster.Settings, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        broadcaster.setup(web.Application(), settings)


def test_setup_refuses_to_set_up_twice() -> None:
    app = web.Application()
    broadcaster.setup(app)
    with pytest.raises(ValueError, match="already set up on this application"):
        broadcaster.setup(app, prefix="/other")


async def test_events_response_without_setup_says_what_is_missing() -> None:
    request = make_mocked_request("GET", "/mine", app=web.Application())
    with pytest.raises(RuntimeError, match=re.escape("call broadcaster.setup(app)")):
        await broadcaster.events_response(request, topics=["t"])


async def test_one_string_for_topics_is_refused_not_spelled_out() -> None:
    """`topics="orders"` would otherwise follow "o", "r", "d", ... without a word."""
    request = make_mocked_request("GET", "/mine", app=web.Application())
    with pytest.raises(TypeError, match=re.escape("not one string: topics=['orders']")):
        await broadcaster.events_response(request, topics="orders")


async def test_publishing_to_a_topic_no_stream_could_follow_is_refused(client: Client) -> None:
    broker = client.app[broadcaster.BROKER]
    with pytest.raises(InvalidTopic, match="invalid topic 'no spaces'"):
        await broker.publish("no spaces", "x")
    assert sum(broker.stats.published.values()) == 0


def routes(app: web.Application, prefix: str = "") -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical.removeprefix(prefix))
        for route in app.router.routes()
        if route.resource is not None
    }


def test_create_app_is_built_on_the_same_wiring() -> None:
    """The standalone app has what `setup` mounts, at the root, plus the page."""
    embedded = web.Application()
    broadcaster.setup(embedded, QUIET, jobs=True)
    mounted, at_root = routes(embedded, "/sse"), routes(broadcaster.create_app(QUIET))
    assert ("POST", "/publish") in mounted
    assert mounted < at_root
    assert {("GET", "/"), ("GET", "/long")} <= at_root - mounted


def readme_names(heading: str) -> list[str]:
    """The names in the list right under `heading` in the README."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n\n", 1)[1].split("\n\n", 1)[0]
    return [match[1] for match in re.finditer(r"^- `(?:[\w.]+\.)?(\w+)", section, re.M)]


@pytest.mark.parametrize(
    ("heading", "module"),
    [
        ("### The public names", broadcaster),
        ("### The client's public names", broadcaster.client),
    ],
)
def test_the_public_names_are_exactly_what_the_readme_lists(heading: str, module: Any) -> None:
    assert sorted(readme_names(heading)) == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_the_public_names_load_on_first_use() -> None:
    """`import broadcaster` is cheap: the memory-capped import child runs
    `python -m broadcaster.jobs.xlsx` and must not load aiohttp's server."""
    code = (
        "import sys, broadcaster; before = 'aiohttp.web' in sys.modules; "
        "broadcaster.setup; print(before, 'aiohttp.web' in sys.modules)"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert probe.stdout.split() == ["False", "True"]
