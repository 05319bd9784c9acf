"""CORS: closed unless an origin is on the `--cors-origins` allow-list.

Pages on other origins may then read the stream and publish (the bearer token
still applies). No wildcard: the allow-list names every origin.
"""

from __future__ import annotations

from aiohttp import web

from broadcaster.web.errors import ApiError
from broadcaster.web.keys import SETTINGS
from broadcaster.wire import origins

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
MAX_AGE_SECONDS = "600"


def _allowed_origin(request: web.BaseRequest) -> str | None:
    origin = request.headers.get("Origin")
    allowed = request.app[SETTINGS].cors_origins if isinstance(request, web.Request) else ()
    return origin if origin in allowed else None


async def cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """An `on_response_prepare` hook. A stream's CORS headers are already in the
    header list the stream core gives both doors."""
    if isinstance(request, web.Request) and response.content_type != "text/event-stream":
        allowed = request.app[SETTINGS].cors_origins
        response.headers.extend(origins.cors_headers(request.headers.get("Origin"), allowed))


async def preflight(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    if origin is None:
        raise ApiError(400, "an OPTIONS request needs an Origin header")
    if _allowed_origin(request) is None:
        raise ApiError(403, f"origin {origin[:100]!r} is not allowed: see --cors-origins")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE_SECONDS,
        },
    )
