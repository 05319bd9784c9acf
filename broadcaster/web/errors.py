"""Every error answer is JSON that says what is wrong; nothing leaks a traceback.

Both parts work without a middleware: a middleware's frame would stay alive for
the whole life of every stream, and at 10,000 streams that is memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

JSON = "application/json"


def error_body(status: int, message: str) -> str:
    return json.dumps({"error": message, "status": status})


class ApiError(web.HTTPException):
    """Raised by handlers; answers `{"error": message, "status": status}`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        self.status_code = status
        self.message = message
        super().__init__(headers=headers, text=error_body(status, message), content_type=JSON)


async def json_error_body(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """An `on_response_prepare` hook: aiohttp's own errors (404, 405, 500) as JSON."""
    if response.status < 400 or not isinstance(response, web.Response):
        return
    if response.content_type != JSON:
        body = error_body(response.status, response.reason).encode()
        response.body = body
        response.content_type = JSON
        # aiohttp fixed the length when it built its own text body.
        response.headers["Content-Length"] = str(len(body))
