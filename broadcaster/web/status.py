"""GET /healthz and GET /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broadcaster.web.keys import BROKER, METRICS, POLICY


async def healthz(request: web.Request) -> web.Response:
    broker, policy = request.app[BROKER], request.app[POLICY]
    up = broker.healthy()
    topics: dict[str, int] = {}
    for topic, count in broker.topic_counts().items():
        shown = policy.shown_as(topic)
        topics[shown] = topics.get(shown, 0) + count
    body = {
        "status": "ok" if up else "degraded",
        "clients": broker.client_count,
        "topics": topics,
        "backend": {"name": broker.name, "status": "up" if up else "down"},
    }
    return web.json_response(body, status=200 if up else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
