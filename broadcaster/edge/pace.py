"""A request body must keep arriving, or it is answered 408 and its connection closed.

aiohttp's keep-alive timer bounds only the wait for a request's head: once the
head is in, a body may trickle for ever (a body at one byte a second kept 20 of
20 connections open for as long as anyone watched). The rule here is a minimum
rate, measured afresh over each window of `--idle-timeout` seconds: each window
must bring `--min-body-rate` bytes for each of its seconds, until the body is
complete. A stalled or trickling body is cut at the end of its first window; a
large upload at any ordinary speed is never cut, however long it takes in all;
and no credit builds up, so a fast start cannot buy a stall later. Progress is
counted in bytes as sent (compressed, if the body is), so a compressed trickle
gains nothing from its ratio.

The watch starts when aiohttp builds the request (`edge/server.py` hooks the
server's `request_factory`), so it covers every route and every connection,
whether the front door handed it over or aiohttp kept it alive.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from broadcaster.web.errors import ApiError


def watch(request: web.BaseRequest, window: float, min_rate: int) -> None:
    """Pace `request`'s body, if some of it is still to come."""
    if not request.content.is_eof():
        BodyWatch(request, window, min_rate).start()


class BodyWatch:
    """One body's pace, checked by a timer at the end of each window."""

    __slots__ = ("_handle", "_min_bytes", "_request", "_seen", "_window")

    def __init__(self, request: web.BaseRequest, window: float, min_rate: int) -> None:
        self._request = request
        self._window = window
        self._min_bytes = max(1, round(min_rate * window))
        self._seen = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        payload = self._request.content
        self._seen = payload.total_raw_bytes
        self._handle = asyncio.get_running_loop().call_later(self._window, self._check)
        payload.on_eof(self._stop)

    def _stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        payload = self._request.content
        if payload.is_eof() or payload.exception() is not None:
            return  # complete, or the connection is gone
        arrived = payload.total_raw_bytes
        if arrived - self._seen >= self._min_bytes:
            self._seen = arrived
            self._handle = asyncio.get_running_loop().call_later(self._window, self._check)
        else:
            self._cut(arrived - self._seen)

    def _cut(self, arrived: int) -> None:
        request, payload = self._request, self._request.content
        # aiohttp reads nothing more from this connection, and closes it once
        # the request in hand is answered.
        request.protocol.close()
        if request.writer.output_size == 0:
            # Nothing answered yet: a handler reading the body gets this, and
            # aiohttp answers it (after EOF below, a read raises it first).
            payload.set_exception(too_slow(arrived, self._window, self._min_bytes))
        # Ends aiohttp's lingering read of an unread body, which would otherwise
        # go on at the client's pace for up to 10 s after the answer.
        payload.feed_eof()


def too_slow(arrived: int, window: float, min_bytes: int) -> ApiError:
    error = ApiError(
        408,
        f"request body too slow: {arrived} bytes in {window:g} s, at least {min_bytes}"
        " were due (--min-body-rate over each --idle-timeout)",
    )
    error.force_close()
    return error
