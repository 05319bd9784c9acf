"""aiohttp's protocol for every connection the front door hands over, with its
refusals kept to the API's promise.

aiohttp answers a request its parser refuses before any handler runs, so no
`on_response_prepare` hook sees it, and it answers in plain text that quotes the
offending bytes, with 400 whatever the fault. Here the same refusal is
`{"error": ..., "status": N}` with the precise status (414 for a long URL, 431
for a long header or too many headers), saying what is wrong in our own words.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import re
import struct
import termios
import time
from collections import deque
from http import HTTPStatus
from typing import Any, TypedDict

from aiohttp import hdrs, web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    LineTooLong,
)
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import RequestHandler

from broadcaster.edge.arrivals import Arrivals
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
    knowing by when each request it queues had come (`edge/arrivals.py`)."""

    __slots__ = ("_arrivals", "_dated", "_dates", "_watch", "_watch_every")

    def __init__(self, manager: web.Server, **options: Any) -> None:
        super().__init__(manager, **{**LIMITS, **options})
        self._arrivals = Arrivals()
        self._dates: deque[float] = deque()
        self._dated = 0  # of aiohttp's `_request_count`
        self._watch: asyncio.TimerHandle | None = None
        self._watch_every = UNREAD_WATCH

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:  # aiohttp drops what comes now
            return
        if not self._messages and not self._buffer_paused:
            self._arrivals.caught_up()
        if data:
            self._arrivals.read(len(data), _unread(self.transport), time.perf_counter())
        super().data_received(data)
        self._date_new()

    def _date_new(self) -> None:
        """Date the requests aiohttp parsed since the last call, in order."""
        new, self._dated = self._request_count - self._dated, self._request_count
        if new <= 0:
            return
        now = time.perf_counter()
        queued = min(new, len(self._messages))
        # aiohttp also parses outside data_received (what follows a declined
        # upgrade), and may have taken those already: they go first, unsized.
        self._dates.extend(self._arrivals.date(None, now) for _ in range(new - queued))
        for message, _ in itertools.islice(self._messages, len(self._messages) - queued, None):
            self._dates.append(self._arrivals.date(_wire_size(message), now))

    def take_arrival(self) -> float | None:
        """By when the request aiohttp starts now had come (`time.perf_counter`):
        pipelined requests wait their turn, and that wait is part of their latency.
        (aiohttp takes requests in the order it parsed them; the tests of
        pipelined publishes in tests/test_publish.py fail if that stops.)"""
        self._date_new()
        return self._dates.popleft() if self._dates else None

    def _pause_reading_for_buffer(self) -> None:
        # While aiohttp reads nothing, requests keep coming into the kernel:
        # note them as they come, not only once reading resumes. (aiohttp's
        # private hooks: the tests of requests past its queue in
        # tests/test_publish.py fail if they stop being called.)
        super()._pause_reading_for_buffer()
        self._watch_every = UNREAD_WATCH
        self._watch_unread()

    def _watch_unread(self) -> None:
        self._stop_watching()
        if self._buffer_paused and self.transport is not None:
            grew = self._arrivals.saw(_unread(self.transport), time.perf_counter())
            # A connection paused behind a long request (a stream) may stay so
            # for hours with nothing coming: look less often while nothing does.
            every = UNREAD_WATCH if grew else min(2 * self._watch_every, UNREAD_WATCH_MAX)
            self._watch_every = every
            self._watch = self._loop.call_later(every, self._watch_unread)

    def _resume_reading_for_buffer(self) -> None:
        self._stop_watching()
        super()._resume_reading_for_buffer()

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

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


def _wire_size(message: object) -> int | None:
    """A parsed request's length as clients write it ("Name: value" headers),
    or None when it cannot be told (a refusal, a chunked body)."""
    if not isinstance(message, RawRequestMessage) or message.chunked:
        return None
    length = message.headers.get(hdrs.CONTENT_LENGTH, "0")
    line = len(message.method) + len(message.path) + len(" HTTP/1.1\r\n") + 1
    fields = sum(len(name) + len(value) + len(": \r\n") for name, value in message.raw_headers)
    return line + fields + len("\r\n") + (int(length) if length.isdigit() else 0)


def _unread(transport: asyncio.BaseTransport | None) -> int:
    """Bytes the kernel holds for this connection, not yet read."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    try:
        return int(_INT.unpack(fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(_INT.size)))[0])
    except OSError:  # closed meanwhile
        return 0


_INT = struct.Struct("i")
UNREAD_WATCH = 0.01  # seconds between looks at a paused connection's unread bytes
UNREAD_WATCH_MAX = 0.25  # ... while nothing more comes


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
