"""`create_app`: routes, background tasks and shutdown, wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from broadcaster.fanout.broker import Backend, Broker, open_store
from broadcaster.fanout.heartbeat import run_heartbeat
from broadcaster.fanout.ticker import run_ticker
from broadcaster.jobs import routes as job_routes
from broadcaster.jobs.registry import Jobs, is_job_topic, metrics_label
from broadcaster.ops.config import Settings, policy_for
from broadcaster.ops.lag import LoopLag
from broadcaster.ops.metrics import Metrics
from broadcaster.web import cors, pages, publish, slow_work, status, stream
from broadcaster.web.errors import json_error_body
from broadcaster.web.keys import BROKER, JOBS, LAG, METRICS, POLICY, SETTINGS, STOPPING
from broadcaster.web.stream_core import SHUTDOWN_DATA
from broadcaster.wire.events import Frame

SHUTDOWN = Frame.of(SHUTDOWN_DATA)


def create_app(settings: Settings, backend: Backend | None = None) -> web.Application:
    metrics = Metrics()
    broker = Broker(
        backend or _backend(settings),
        queue_size=settings.queue_size,
        on_fanout=metrics.observe_fanout,
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

    # Only POST /publish reads a body whole (uploads are streamed): this is its limit.
    app = web.Application(client_max_size=settings.max_publish_bytes)
    app.on_response_prepare.append(json_error_body)
    app.on_response_prepare.append(pages.security_headers)
    app.on_response_prepare.append(cors.cors_headers)
    app[SETTINGS] = settings
    app[BROKER] = broker
    app[METRICS] = metrics
    app[POLICY] = policy
    app[LAG] = lag
    app[JOBS] = Jobs(broker, settings.data_dir, lambda topic: bool(policy.needs_token([topic])))
    app[STOPPING] = asyncio.Event()
    app.cleanup_ctx.append(_background_tasks)
    app.on_shutdown.append(_end_streams)
    _add_routes(app)
    return app


def _backend(settings: Settings) -> Backend:
    # The lease outlives a few ticks, so a dead leader is replaced within a few.
    lease = max(0.5, 3 * settings.tick_interval)
    return open_store(settings.history, settings.redis_url, lease)


def _add_routes(app: web.Application) -> None:
    root = pages.static_dir()
    app.router.add_get("/", pages.file_handler(root / "index.html"))
    app.router.add_static("/static/", root)
    app.router.add_get("/favicon.ico", pages.file_handler(root / "favicon.svg", pages.SVG))
    app.router.add_get(
        "/openapi.yaml", pages.file_handler(pages.openapi_path(), "application/yaml")
    )
    app.router.add_get("/events", stream.events)
    app.router.add_post("/publish", publish.publish)
    app.router.add_get("/healthz", status.healthz)
    app.router.add_get("/metrics", status.metrics)
    app.router.add_post("/jobs", job_routes.create_job)
    app.router.add_get("/jobs", job_routes.list_jobs)
    app.router.add_get("/jobs/{id}", job_routes.get_job)
    app.router.add_get("/long", slow_work.stream_slow_work)
    for path in ("/events", "/publish", "/jobs", "/jobs/{id}", "/healthz", "/long"):
        app.router.add_route("OPTIONS", path, cors.preflight)


async def _background_tasks(app: web.Application) -> AsyncIterator[None]:
    broker, settings = app[BROKER], app[SETTINGS]
    await broker.start()
    tasks = [
        _spawn(
            run_ticker(broker, settings.tick_interval, app[METRICS].observe_tick_lateness), "ticker"
        ),
        _spawn(run_heartbeat(broker, settings.heartbeat_interval), "heartbeat"),
    ]
    if settings.max_publish_lag_ms:
        tasks.append(_spawn(app[LAG].run(), "loop lag"))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[JOBS].aclose()
    await broker.aclose()


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coro, name=name)


async def _end_streams(app: web.Application) -> None:
    # Without this, aiohttp waits out shutdown_timeout for every open stream.
    app[BROKER].close_all(SHUTDOWN)
    app[STOPPING].set()
