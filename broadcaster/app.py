"""Wiring: the broker, its routes, background tasks and shutdown, put into an
aiohttp application, in one place for both uses.

`create_app` is the standalone server (every route, at the root, served by
`edge/server.py` with the front door before it). `setup` mounts the same parts
in an application of one's own, under a prefix, as a sub-application, so that
the JSON error bodies, CORS and security headers apply to its routes only.
Both call `_install`: there is one wiring.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from broadcaster.fanout.broker import Backend, Broker, open_store
from broadcaster.fanout.heartbeat import run_heartbeat
from broadcaster.fanout.mercure_router import Router
from broadcaster.fanout.ticker import run_ticker
from broadcaster.jobs import routes as job_routes
from broadcaster.jobs.registry import Jobs, is_job_topic, metrics_label
from broadcaster.ops.config import Settings, checked, policy_for
from broadcaster.ops.lag import LoopLag
from broadcaster.ops.metrics import Metrics
from broadcaster.web import cors, mercure, pages, publish, slow_work, status, stream
from broadcaster.web.errors import json_error_body
from broadcaster.web.keys import (
    BROKER,
    JOBS,
    LAG,
    MERCURE,
    METRICS,
    POLICY,
    SETTINGS,
    STOPPING,
)
from broadcaster.web.stream_core import SHUTDOWN_DATA
from broadcaster.wire.events import Frame

SHUTDOWN = Frame.of(SHUTDOWN_DATA)


@dataclass(frozen=True, slots=True)
class Features:
    """What besides the stream, publishing, health and metrics is installed."""

    ticker: bool = False
    jobs: bool = False
    page: bool = False
    """The demo page and `/long`: its scripts ask for root paths, so only at the root."""
    mercure: bool = False
    """The Mercure hub at `/.well-known/mercure`, the path its clients discover."""


STANDALONE = Features(ticker=True, jobs=True, page=True, mercure=True)


def create_app(settings: Settings, backend: Backend | None = None) -> web.Application:
    """The standalone server's application: every route (stream, publish, jobs,
    the page, health, metrics), the broker on `settings`' store (or `backend`),
    the ticker and heartbeat, and a shutdown that ends every stream at once.
    Serve it with `edge.server.serve`, which puts the front door before it."""
    # Only POST /publish reads a body whole (uploads are streamed): this is its limit.
    app = web.Application(client_max_size=settings.max_publish_bytes)
    features = replace(STANDALONE, mercure=settings.mercure == "on")
    _install(app, settings, backend, features)
    return app


def setup(
    app: web.Application,
    settings: Settings | None = None,
    *,
    prefix: str = "/sse",
    backend: Backend | None = None,
    ticker: bool = False,
    jobs: bool = False,
) -> Broker:
    """Add broadcaster to `app`, an application of your own; returns its broker.

    Under `prefix`: `GET events` (the stream), `POST publish`, `GET healthz`,
    `GET metrics`, and with `jobs` the `/jobs` routes; their lifecycle joins
    `app`'s (the broker starts with it; on shutdown every stream gets its
    `shutdown` event). The broker is `app[broadcaster.BROKER]` too, for your own
    handlers to publish with, and `events_response` streams from them. The time
    ticker (`ticker`) and the jobs (`jobs`) are off unless asked for; the demo
    page is the standalone server's only. `settings` defaults to `Settings()`;
    `backend` to the in-memory store, or Redis when `settings.redis_url` is set.
    """
    if BROKER in app:
        raise ValueError("broadcaster is already set up on this application")
    if not prefix.startswith("/") or not prefix.strip("/"):
        raise ValueError(f"prefix {prefix!r} is not a path such as '/sse'")
    settings = checked(settings or Settings())
    sub = web.Application()
    broker = _install(sub, settings, backend, Features(ticker=ticker, jobs=jobs))
    # The application's own handlers read these (`events_response` does);
    # `request.config_dict` finds them from the sub-application's routes too.
    app[BROKER], app[SETTINGS], app[POLICY] = broker, settings, sub[POLICY]
    app[METRICS], app[STOPPING] = sub[METRICS], sub[STOPPING]
    app.add_subapp(prefix.rstrip("/"), sub)
    return broker


def _install(
    app: web.Application, settings: Settings, backend: Backend | None, features: Features
) -> Broker:
    """The one wiring: the broker and what it needs, onto `app`."""
    metrics = Metrics()
    broker = Broker(
        backend or _backend(settings),
        queue_size=settings.queue_size,
        on_fanout=metrics.observe_fanout,
        max_topic_length=settings.max_topic_length,
        hold_window=settings.coalesce_ms / 1000,
    )
    policy = policy_for(settings)
    # Every job under one series (its name tells nothing), other private topics
    # under "(private)": /metrics is open to anyone who can reach it.
    broker.stats.label = lambda t: metrics_label(t) if is_job_topic(t) else policy.shown_as(t)
    metrics.watch(broker)
    lag = LoopLag()
    metrics.watch_lag(lag)
    metrics.watch_refusals(policy.refusals)

    app.on_response_prepare.append(json_error_body)
    app.on_response_prepare.append(pages.security_headers)
    app.on_response_prepare.append(cors.cors_headers)
    app[SETTINGS] = settings
    app[BROKER] = broker
    app[METRICS] = metrics
    app[POLICY] = policy
    if features.mercure:
        router = app[MERCURE] = Router(lambda topic: bool(policy.needs_token([topic])))
        broker.add_tap(router.tap)
        app.on_response_prepare.append(mercure.discovery)
    app[LAG] = lag
    app[STOPPING] = asyncio.Event()
    if features.jobs:
        app[JOBS] = Jobs(
            broker,
            settings.data_dir,
            lambda t: bool(policy.needs_token([t])),
            xlsx_budget=settings.xlsx_memory_mib * 1024**2,
        )
    app.cleanup_ctx.append(_background_tasks(features.ticker))
    app.on_shutdown.append(_end_streams)
    _add_routes(app, features)
    return broker


def _backend(settings: Settings) -> Backend:
    # The lease outlives a few ticks, so a dead leader is replaced within a few.
    lease = max(0.5, 3 * settings.tick_interval)
    return open_store(settings.history, settings.redis_url, lease)


def _add_routes(app: web.Application, features: Features) -> None:
    app.router.add_get("/events", stream.events)
    app.router.add_post("/publish", publish.publish)
    app.router.add_get("/healthz", status.healthz)
    app.router.add_get("/metrics", status.metrics)
    preflighted = ["/events", "/publish", "/healthz"]
    if features.jobs:
        app.router.add_post("/jobs", job_routes.create_job)
        app.router.add_get("/jobs", job_routes.list_jobs)
        app.router.add_get("/jobs/{id}", job_routes.get_job)
        preflighted += ["/jobs", "/jobs/{id}"]
    if features.page:
        _add_page(app)
        preflighted.append("/long")
    if features.mercure:
        app.router.add_get(mercure.PATH, mercure.subscribe)
        app.router.add_post(mercure.PATH, mercure.publish)
        preflighted.append(mercure.PATH)
    for path in preflighted:
        app.router.add_route("OPTIONS", path, cors.preflight)


def _add_page(app: web.Application) -> None:
    root = pages.static_dir()
    app.router.add_get("/", pages.file_handler(root / "index.html"))
    app.router.add_static("/static/", root)
    app.router.add_get("/favicon.ico", pages.file_handler(root / "favicon.svg", pages.SVG))
    app.router.add_get(
        "/openapi.yaml", pages.file_handler(pages.openapi_path(), "application/yaml")
    )
    app.router.add_get("/long", slow_work.stream_slow_work)


def _background_tasks(
    ticker: bool,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def background_tasks(app: web.Application) -> AsyncIterator[None]:
        broker, settings = app[BROKER], app[SETTINGS]
        await broker.start()
        tasks = [_spawn(run_heartbeat(broker, settings.heartbeat_interval), "heartbeat")]
        if ticker:
            on_late = app[METRICS].observe_tick_lateness
            tasks.append(_spawn(run_ticker(broker, settings.tick_interval, on_late), "ticker"))
        if settings.max_publish_lag_ms:
            tasks.append(_spawn(app[LAG].run(), "loop lag"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if JOBS in app:
            await app[JOBS].aclose()
        await broker.aclose()

    return background_tasks


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coro, name=name)


async def _end_streams(app: web.Application) -> None:
    # Without this, aiohttp waits out shutdown_timeout for every open stream.
    app[BROKER].close_all(SHUTDOWN)
    app[STOPPING].set()
