"""GET /healthz and GET /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broadcaster.web.keys import BROKER, METRICS


async def healthz(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    up = broker.healthy()
    body = {
        "status": "ok" if up else "degraded",
        "clients": broker.clients,
        "topics": broker.topic_counts(),
        "backend": {"name": broker.name, "status": "up" if up else "down"},
    }
    return web.json_response(body, status=200 if up else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
