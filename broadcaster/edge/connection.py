"""aiohttp's protocol for every connection the front door hands over, with its
refusals kept to the API's promise.

aiohttp answers a request its parser refuses before any handler runs, so no
`on_response_prepare` hook sees it, and it answers in plain text that quotes the
offending bytes, with 400 whatever the fault. Here the same refusal is
`{"error": ..., "status": N}` with the precise status (414 for a long URL, 431
for a long header or too many headers), saying what is wrong in our own words.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from http import HTTPStatus
from typing import Any, TypedDict

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler

from broadcaster.web.errors import JSON, error_body

# The parser's limits, shared with the front door's own parse. The URL's and a
# header's limits differ on purpose: aiohttp raises the same LineTooLong for
# both, naming only the limit it hit, and that tells 414 from 431.
MAX_LINE_SIZE = 8190  # the request target (URL); aiohttp's default
MAX_FIELD_SIZE = 8192  # one header, name and value
MAX_HEADERS = 128


class ParserLimits(TypedDict):
    max_line_size: int
    max_field_size: int
    max_headers: int


LIMITS: ParserLimits = {
    "max_line_size": MAX_LINE_SIZE,
    "max_field_size": MAX_FIELD_SIZE,
    "max_headers": MAX_HEADERS,
}

# The first clause of a parser message, when it is plain words: llhttp's reason
# ("Invalid header value char") or aiohttp's own ("Missing 'Host' header in
# request"). What follows the colon quotes the request, so it is never used.
_REASON = re.compile(r"[A-Z][A-Za-z' -]{2,79}")
_TLS = "Received HTTPS traffic on an HTTP port"
_H2 = "Pause on PRI/Upgrade"  # llhttp stops at the HTTP/2 connection preface

log = logging.getLogger("broadcaster.access")


class Connection(RequestHandler):
    """aiohttp's `RequestHandler`, answering its own refusals as JSON, and
    knowing when each request it queues was read."""

    __slots__ = ("_arrivals",)

    def __init__(self, manager: web.Server, **options: Any) -> None:
        super().__init__(manager, **{**LIMITS, **options})
        self._arrivals: deque[float] = deque()

    def data_received(self, data: bytes) -> None:
        # aiohttp counts every message it parses, refusals included, and takes
        # them in that order; tests/test_publish.py fails if that stops.
        before = self._request_count
        super().data_received(data)
        parsed = self._request_count - before
        if parsed:
            self._arrivals.extend([time.perf_counter()] * parsed)

    def take_arrival(self) -> float | None:
        """When the request aiohttp starts now was read (`time.perf_counter`):
        pipelined requests wait their turn, and that wait is part of their latency."""
        return self._arrivals.popleft() if self._arrivals else None

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: it logs the error, and raises if an answer has begun.
        super().handle_error(request, status, exc, message)
        status, text = refusal(self, status, exc)
        if isinstance(exc, HttpProcessingError):
            log.warning("Refused a malformed request from %s: %d %s", request.remote, status, text)
        response = web.Response(status=status, text=error_body(status, text), content_type=JSON)
        response.force_close()
        return response


def refusal(handler: RequestHandler, status: int, exc: BaseException | None) -> tuple[int, str]:
    """The precise status, and what is wrong, without quoting the request.

    tests/test_hostile.py's table of refusals fails if aiohttp stops routing its
    parser's errors here, or changes what LineTooLong carries.
    """
    if isinstance(exc, LineTooLong):
        if exc.args[1] == handler.max_line_size != handler.max_field_size:
            return 414, f"the URL is longer than {handler.max_line_size} bytes"
        return 431, f"a header is longer than {handler.max_field_size} bytes"
    if isinstance(exc, HttpProcessingError) and exc.message.startswith(_H2):
        return 400, "HTTP/2 is not served here: use HTTP/1.1"
    if isinstance(exc, BadHttpMethod):
        if exc.message == _TLS:
            return 400, "TLS sent to a plain-HTTP port: use http://, not https://"
        return 400, "malformed request line: the method is not an HTTP method"
    if isinstance(exc, BadStatusLine):
        return 400, "malformed request line: expected METHOD /path HTTP/1.1"
    if isinstance(exc, InvalidHeader):
        return 400, "malformed header"
    if isinstance(exc, HttpProcessingError):
        reason = _reason(exc.message)
        if reason.startswith("Too many headers"):
            return 431, f"more than {handler.max_headers} headers"
        return 400, f"malformed request: {reason}" if reason else "malformed request"
    return status, HTTPStatus(status).phrase.lower()


def _reason(message: str) -> str:
    first = message.split(":", 1)[0].strip().rstrip(".")
    return first if _REASON.fullmatch(first) else ""
