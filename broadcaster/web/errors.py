"""Every error answer is JSON that says what is wrong; nothing leaks a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("broadcaster.web")


class ApiError(Exception):
    """Raised by handlers; becomes `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.message, error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k.lower() in {"allow", "retry-after"}}
        return error_response(error.status, error.reason, headers)
    except Exception:
        # A bug, not bad input: keep the traceback in the log, out of the answer.
        log.exception("Unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal server error")
