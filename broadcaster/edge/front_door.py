"""The front door: a fresh connection whose first request is a plain `GET /events`
is streamed from here; every other connection is handed to aiohttp untouched.

Why: aiohttp's request machinery (its protocol, request, response and handler
task) costs about 240 µs of a core per connection here, so 10,000 clients took
2.5 s to connect, and a minimal aiohttp handler was no faster. A stream needs
none of it: it is one request, one write of headers, then frames straight to
the socket. Here a stream costs a parse by aiohttp's own C parser, one write and
a subscription, with no task, request or response object behind it (see
docs/PERFORMANCE.md).

Only the plain success case is served here: a complete `GET /events` HTTP/1.1
request head in the first read, with nothing after it, valid topics and room under
`--max-clients`. Anything else (another path or method, HTTP/1.0, a body, a
request split across reads, bad topics, the client limit, a keep-alive
connection's later requests) goes to aiohttp with the bytes read so far, and
aiohttp answers exactly as it would have, errors included. What a stream is
(admission, headers, opening, replay skipping, the end-of-stream log line) is
the stream core's (`web/stream_core.py`), shared with aiohttp's handler in
`stream.py`; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from functools import lru_cache
from typing import cast

from aiohttp import web
from aiohttp.http import (
    SERVER_SOFTWARE,
    HttpProcessingError,
    HttpRequestParser,
    HttpVersion11,
    RawRequestMessage,
)

from broadcaster.edge.connection import LIMITS
from broadcaster.fanout.broker import HIGH_WATER, Broker
from broadcaster.ops.config import Settings
from broadcaster.ops.logs import scrub
from broadcaster.web import stream_core
from broadcaster.web.keys import BROKER, POLICY, SETTINGS
from broadcaster.web.stream_core import Refusal, Stream, StreamRequest
from broadcaster.wire.chunked import LAST_CHUNK, chunk
from broadcaster.wire.origins import Headers

PREFIX = b"GET /events"
HEAD_END = b"\r\n\r\n"
BODY_HEADERS = ("Content-Length", "Transfer-Encoding", "Expect", "Upgrade")


class FrontDoor:
    """The protocol factory for the listening socket: one per server."""

    def __init__(self, app: web.Application, aiohttp_protocol: Callable[[], asyncio.Protocol]):
        self.broker: Broker = app[BROKER]
        self.settings: Settings = app[SETTINGS]
        self.policy = app[POLICY]
        self.hand_off_to = aiohttp_protocol
        self.sniffing: set[StreamProtocol] = set()
        self.streams: set[StreamProtocol] = set()
        self.response_head = ResponseHead()
        self.awaiting_request_head: dict[asyncio.Protocol, asyncio.TimerHandle] = {}
        self._all_closed: asyncio.Event | None = None

    def __call__(self) -> StreamProtocol:
        return StreamProtocol(self)

    def accept(self, data: bytes) -> tuple[StreamRequest, str] | None:
        """The request and its path, when `data` is exactly one plain
        `GET /events` request head that aiohttp would answer with a stream; None for
        anything else."""
        if not data.startswith(PREFIX) or data.find(HEAD_END) != len(data) - len(HEAD_END):
            return None
        message = _parse(data)
        if message is None or not _plain_get_events(message):
            return None
        try:
            request = stream_core.admit(
                self.broker,
                self.settings,
                self.policy,
                message.url.query,
                message.headers,
                count=False,
            )
        except Refusal:
            return None  # aiohttp's handler refuses it, in the same words
        return request, message.path

    def expect_request_head(
        self, protocol: asyncio.Protocol, transport: asyncio.Transport, deadline: float
    ) -> None:
        """Hold a handed-over connection to the deadline its first read started
        under: aiohttp's own timer starts at the hand-over, and would give a
        request head that began just before the deadline a whole idle timeout more."""

        def overdue() -> None:
            self.awaiting_request_head.pop(protocol, None)
            transport.close()

        self.awaiting_request_head[protocol] = asyncio.get_running_loop().call_at(deadline, overdue)

    def request_head_received(self, protocol: asyncio.Protocol) -> None:
        """aiohttp has built a request on `protocol`: its first request head came in time."""
        timer = self.awaiting_request_head.pop(protocol, None)
        if timer is not None:
            timer.cancel()

    def sniffing_began(self, protocol: StreamProtocol) -> None:
        self.sniffing.add(protocol)

    def streaming_began(self, protocol: StreamProtocol) -> None:
        self.sniffing.discard(protocol)
        self.streams.add(protocol)

    def left(self, protocol: StreamProtocol) -> None:
        """`protocol` no longer holds a connection: handed over, or closed."""
        self.sniffing.discard(protocol)
        self.streams.discard(protocol)
        if not (self.sniffing or self.streams) and self._all_closed is not None:
            self._all_closed.set()

    async def wait_closed(self, grace: float) -> None:
        """After the broker has ended every stream: close connections that have
        not sent a request, wait for the streams' last bytes to leave, then cut
        whatever is still open (a client that stopped reading)."""
        for protocol in list(self.sniffing):
            protocol.close_connection()
        for timer in self.awaiting_request_head.values():
            timer.cancel()  # aiohttp's runner has closed those connections
        self.awaiting_request_head.clear()
        if self.sniffing or self.streams:
            self._all_closed = asyncio.Event()
            try:
                async with asyncio.timeout(grace):
                    await self._all_closed.wait()
            except TimeoutError:
                for protocol in [*self.sniffing, *self.streams]:
                    protocol.abort_connection()


def _parse(data: bytes) -> RawRequestMessage | None:
    # The limits aiohttp's protocol is given, so whatever it would refuse is
    # handed to it to refuse.
    parser = HttpRequestParser(None, asyncio.get_running_loop(), 2**16, **LIMITS)
    try:
        messages, _, _ = parser.feed_data(data)
    except (HttpProcessingError, ValueError):
        return None
    return messages[0][0] if len(messages) == 1 else None


def _plain_get_events(message: RawRequestMessage) -> bool:
    return (
        message.method == "GET"
        and message.version == HttpVersion11
        and message.url.path == "/events"
        and not message.upgrade
        and not message.chunked
        and not any(name in message.headers for name in BODY_HEADERS)
    )


class ResponseHead:
    """A stream's status line and headers, as aiohttp's writer frames them: the
    core's headers, then the framing aiohttp adds (tests/test_front_door.py
    compares the bytes both doors write)."""

    def __init__(self) -> None:
        self._second = -1
        self._framing = b""

    def render(self, headers: Headers) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._framing = _lines(
                (
                    ("Transfer-Encoding", "chunked"),
                    ("Date", formatdate(now, usegmt=True)),
                    ("Server", SERVER_SOFTWARE),
                    ("Connection", "close"),
                ),
            )
        return _status_and(headers) + self._framing + b"\r\n"


@lru_cache(maxsize=64)
def _status_and(headers: Headers) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + _lines(headers)


def _lines(headers: Iterable[tuple[str, str]]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode()


class StreamProtocol(Stream, asyncio.Protocol):
    """One connection: sniffed on its first read, then either streamed here (as
    the stream core's `Stream`) or handed to aiohttp.

    A stream drains its backlog from transport callbacks instead of a task: the
    broker writes straight to the socket while the client keeps up; when it
    falls behind, frames queue and `resume_writing` (or, for the last frames
    at shutdown, a scheduled call) writes them in one go. Order is kept the way
    `Subscription` describes, since a drain writes everything it takes before
    anything else runs.
    """

    __slots__ = (
        "_door", "_drain_due", "_opened", "_paused", "_replay", "_timer", "_transport",
    )  # fmt: skip

    def __init__(self, door: FrontDoor) -> None:
        super().__init__()
        self._door = door
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._replay: asyncio.Task[None] | None = None
        self._opened = self._paused = self._drain_due = False

    # Sniffing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not `asyncio.Transport` subclasses, only alike.
        self._transport = transport = cast(asyncio.Transport, transport)
        # A connection that never sends a request is closed at the idle timeout,
        # as aiohttp closes one that never completes its request.
        self._timer = asyncio.get_running_loop().call_later(
            self._door.settings.idle_timeout, transport.close
        )
        self._door.sniffing_began(self)

    def data_received(self, data: bytes) -> None:
        if self.sub is not None:
            return  # after a stream's request, nothing the client sends matters
        timer, self._timer = self._timer, None
        assert timer is not None
        timer.cancel()
        accepted = self._door.accept(data)
        if accepted is None:
            self._hand_off(data, timer.when())
        else:
            self._start(*accepted)

    def _hand_off(self, data: bytes, deadline: float) -> None:
        transport = self._transport
        assert transport is not None
        protocol = self._door.hand_off_to()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self._door.expect_request_head(protocol, transport, deadline)
        protocol.data_received(data)
        self._transport = None
        self._door.left(self)

    # Streaming

    def _start(self, request: StreamRequest, path_qs: str) -> None:
        transport, door = self._transport, self._door
        assert transport is not None
        remote = _remote(transport) if stream_core.logs_streams() else "-"
        # The transport pauses this protocol where the broker stops writing
        # direct, so a backlog behind a full socket is drained by
        # `resume_writing`; `_backlog` schedules a drain for any other backlog.
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.open(door.broker, request, (remote, path_qs), transport, self._backlog)
        door.streaming_began(self)
        response_head = door.response_head.render(request.headers)
        if request.last_id is None:
            self._open(response_head + _preamble_chunk(door.settings.retry_ms))
        else:
            opening = self._replay_then_open(response_head, request, path_qs)
            self._replay = asyncio.get_running_loop().create_task(opening)

    async def _replay_then_open(
        self, response_head: bytes, request: StreamRequest, path_qs: str
    ) -> None:
        door = self._door
        try:
            opening = await self.opening(door.broker, door.settings.retry_ms, request)
        except Exception:
            # Nothing is written yet: the client sees a dropped connection and retries.
            stream_core.log.exception("Replay for %s failed", scrub(path_qs))
            self.abort_connection()
            return
        self._open(response_head + chunk(opening))

    def _open(self, first_write: bytes) -> None:
        assert self._transport is not None
        self._transport.write(first_write)
        self._opened = True
        # Whatever queued meanwhile (live frames during a replay, or the end of
        # the stream when the server is already shutting down).
        self._drain()

    def _backlog(self) -> None:
        if self._opened and not self._paused and not self._drain_due:
            self._drain_due = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_due = False
        transport, sub = self._transport, self.sub
        if self._paused or transport is None or sub is None or transport.is_closing():
            return
        frames, ended = self.frames(sub.take_all())
        data = b"".join([frame.chunk for frame in frames] + ([LAST_CHUNK] if ended else []))
        if data:
            transport.write(data)
        if ended:
            transport.close()
        elif self.caught_up:
            sub.go_direct()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._drain()

    def close_connection(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort_connection(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._replay is not None:
            self._replay.cancel()
        # The subscription holds `_backlog`, and so this protocol: dropping both
        # references (`close` drops the subscription) lets reference counting
        # free the pair now, not the collector.
        self._transport = self._timer = None
        self._door.left(self)
        self.close()


@lru_cache(maxsize=8)
def _preamble_chunk(retry_ms: int) -> bytes:
    return chunk(stream_core.preamble(retry_ms))


def _remote(transport: asyncio.Transport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if peer else "-"
