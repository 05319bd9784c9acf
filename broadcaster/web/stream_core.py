"""The stream core: what `GET /events` is, whichever door serves it.

Two doors serve a stream: aiohttp's handler (`web/stream.py`) and the front
door (`edge/front_door.py`), which streams a fresh connection's plain request
without aiohttp's request machinery. The rules live here once, knowing no
framework: which requests are admitted (`admit`), the answer's headers, the
opening (retry, comment, then a replay or a resync), which queued frames the
replay already sent, and the line logged when the stream ends. A door only
moves bytes: it reads the request, turns a `Refusal` into its own answer,
writes what `Stream` gives it and tells it when the connection is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache

from multidict import MultiMapping

from broadcaster.auth import tokens
from broadcaster.auth.carriers import token_from
from broadcaster.auth.policy import Policy
from broadcaster.fanout.broker import END, Broker, Sink, Subscription, clients
from broadcaster.ops.config import Settings
from broadcaster.ops.logs import log_access
from broadcaster.wire import sse
from broadcaster.wire.events import EventId, Frame
from broadcaster.wire.origins import Headers, cors_headers
from broadcaster.wire.topics import DEFAULT_TOPIC, InvalidTopic, check_topic

log = logging.getLogger("broadcaster.access")

CONTENT_HEADERS: Headers = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    # nginx buffers proxied responses unless told not to, which would hold events back.
    ("X-Accel-Buffering", "no"),
)
RETRY_AFTER_SECONDS = "5"
SHUTDOWN_DATA = sse.encode(json.dumps({"reason": "server shutting down"}), event="shutdown")
REAUTH = Frame.of(sse.encode(json.dumps({"reason": "token expired"}), event="reauth"))
# Newer than any id a backend issues. Every backend answers a replay after an id
# it has not reached with a resync naming its newest id, which is how a stream
# with a malformed Last-Event-ID learns the id its resync must carry.
BEYOND_ANY_ID = EventId(10**20, 0)


class Refusal(Exception):
    """A stream request the server will not serve: each door answers it its own
    way (aiohttp's handler as a JSON error; the front door hands the connection
    to aiohttp, whose handler then refuses it in the same words)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: Mapping[str, str] = headers or {}


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """An admitted stream request: what the core needs from it, door-neutral."""

    topics: frozenset[str]
    last_id: str | None
    headers: Headers
    """The answer's headers, CORS included; the door adds only its framing
    (Transfer-Encoding, Date, Server, Connection), as aiohttp's writer does."""
    expires: float | None = None
    """When the token that admitted it expires (epoch seconds); None if none was needed."""


def admit(
    broker: Broker,
    settings: Settings,
    policy: Policy,
    query: MultiMapping[str],
    headers: Mapping[str, str],
    *,
    count: bool = True,
    topics: Collection[str] | None = None,
) -> StreamRequest:
    """The one check every stream request passes, whichever door it came in by;
    raises `Refusal` saying what is wrong.

    `count` says whether a token refusal is counted in the metrics: the front
    door hands a refused request to aiohttp's handler, which counts it.
    `topics`, when given, are followed instead of the query's (an application's
    own handler chose them); they are held to the same rule.
    """
    names = query.getall("topic", [DEFAULT_TOPIC]) if topics is None else list(topics)
    topics = checked_topics(names, settings.max_topics, settings.max_topic_length)
    expires = authorize(policy, topics, headers, query, count)
    check_capacity(broker, settings)
    return StreamRequest(
        topics,
        last_event_id(headers, query),
        response_headers(headers.get("Origin"), settings.cors_origins),
        expires,
    )


def authorize(
    policy: Policy,
    topics: frozenset[str],
    headers: Mapping[str, str],
    query: Mapping[str, str],
    count: bool,
) -> float | None:
    """Refuse private topics the request's token does not cover (401/403).
    Returns when that token expires; None when no token was needed."""
    if not policy.private:
        return None
    token = token_from(
        headers.get("Authorization"), headers.get("Cookie"), query, policy.cookie_name
    )
    try:
        return policy.subscribe(topics, token)
    except tokens.Refusal as refusal:
        if count:
            policy.count(refusal)
        raise Refusal(refusal.status, refusal.message, tokens.challenge(refusal)) from None


def checked_topics(names: list[str], max_topics: int, max_length: int) -> frozenset[str]:
    """`names` as one shared set, or a `Refusal` saying which rule they break."""
    if not names:
        raise Refusal(400, "no topic to follow: give at least one")
    if len(names) > max_topics:
        raise Refusal(
            400, f"too many topics: {len(names)} given, at most {max_topics} (--max-topics)"
        )
    try:
        return _shared(tuple(sorted(check_topic(name, max_length) for name in names)))
    except InvalidTopic as error:
        raise Refusal(400, str(error)) from None


@lru_cache(maxsize=4096)
def _shared(names: tuple[str, ...]) -> frozenset[str]:
    """One set object for every stream that follows the same topics."""
    return frozenset(names)


def check_capacity(broker: Broker, settings: Settings) -> None:
    if broker.client_count >= settings.max_clients:
        raise Refusal(
            503,
            f"server is at its limit of {clients(settings.max_clients)}; retry later",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )


def last_event_id(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The header wins; `?lastEventId=` is for clients that cannot set headers."""
    return headers.get("Last-Event-ID") or query.get("lastEventId") or None


def response_headers(origin: str | None, allowed: tuple[str, ...]) -> Headers:
    """A stream's headers, for any answer that is an event stream."""
    # Only an allowed origin changes the list, so a client cannot grow the cache.
    return _response_headers(origin if origin in allowed else None, allowed)


@lru_cache(maxsize=64)
def _response_headers(origin: str | None, allowed: tuple[str, ...]) -> Headers:
    return CONTENT_HEADERS + cors_headers(origin, allowed)


@lru_cache(maxsize=8)
def preamble(retry_ms: int) -> bytes:
    """What every stream opens with: `retry:` and a comment. It is the whole
    opening when there is nothing to replay. Encoded once, not per connection."""
    return sse.retry(retry_ms) + sse.comment("connected")


async def opening(
    broker: Broker, retry_ms: int, last_id: str | None, topics: frozenset[str]
) -> tuple[bytes, EventId | None]:
    """The first write: the preamble (retry and a comment, so `onopen` fires
    now), then a replay or a resync.

    Returns the bytes and the last replayed id, at or below which queued live
    frames are duplicates of the replay.
    """
    start = preamble(retry_ms)
    if last_id is None:
        return start, None
    try:
        last = EventId.parse(last_id)
    except ValueError as error:
        # A Mercure update's own id is on the wire instead of ours.
        found = await broker.find(last_id)
        if found is None:
            newest = (await broker.replay(BEYOND_ANY_ID, topics)).newest
            return start + _resync(str(error), newest), None
        last = found
    replay = await broker.replay(last, topics)
    if not replay.complete:
        reason = (
            f"event id {last} is not in this server's history: it is older than the "
            "history, or from before a restart or another server"
        )
        return start + _resync(reason, replay.newest), None
    frames = b"".join(event.frame.payload for event in replay.events)
    return start + frames, replay.newest


def _resync(reason: str, newest: EventId | None) -> bytes:
    # Carrying the newest id means the client's next reconnect starts from here.
    # With no event yet, an empty id clears the client's stale one (WHATWG: the
    # field sets the last event ID buffer even when empty), or every reconnect
    # would resync again until the first event.
    data = json.dumps({"reason": reason})
    return sse.encode(data, id="" if newest is None else str(newest), event="resync")


def until_end(batch: list[Frame]) -> tuple[list[Frame], bool]:
    """The frames before END, and whether END came."""
    for index, frame in enumerate(batch):
        if frame is END:
            return batch[:index], True
    return batch, False


def skip_replayed(batch: list[Frame], last_replayed: EventId) -> tuple[list[Frame], EventId | None]:
    """Drop frames already sent by the replay (ids at or below `last_replayed`).
    Returns what is left, and `last_replayed` again, or None once past it."""
    frames = [part for frame in batch for part in (frame.parts or (frame,))]
    kept = [f for f in frames if f.id is None or f.id > last_replayed]
    past = any(f.id is not None and f.id > last_replayed for f in kept)
    return kept, None if past else last_replayed


def logs_streams() -> bool:
    """Whether a stream's end is logged: a door may skip looking up the peer."""
    return log.isEnabledFor(logging.INFO)


class Stream:
    """One subscriber's stream, whichever door serves it: from `open()`, which
    subscribes, to `close()`, which unsubscribes and logs its one access line.

    A door calls `opening()` for the first write, `frames()` on every batch it
    takes from the backlog, and `close()` once the connection is gone. The
    front door's protocol is a `Stream` (a subclass) rather than holding one:
    an object more per connection was 0.1 KiB more per idle stream (bench M1).
    """

    __slots__ = ("_path_qs", "_remote", "_started", "ending", "last_replayed", "sub")

    def __init__(self) -> None:
        self.sub: Subscription | None = None
        self.last_replayed: EventId | None = None
        """Queued frames at or below this id were sent by the replay; None once past it."""
        self.ending = "client disconnected"
        self._remote: str | None = None
        self._path_qs = ""
        self._started = 0.0

    def open(
        self,
        broker: Broker,
        request: StreamRequest,
        where: tuple[str | None, str],
        transport: Sink | None,
        on_backlog: Callable[[], None] | None = None,
    ) -> Subscription:
        """Subscribe. `where` is the access line's remote address and path with
        query (the method is always GET: a HEAD request never streams)."""
        self._started = asyncio.get_running_loop().time()
        self._remote, self._path_qs = where
        self.sub = broker.subscribe(request.topics, transport, on_backlog).open()
        if request.expires is not None:
            # A stream that needed a token ends when the token does, with `event:
            # reauth`: the client gets a new token and resumes with Last-Event-ID.
            self.sub.end_at(request.expires, REAUTH)
        return self.sub

    async def opening(self, broker: Broker, retry_ms: int, request: StreamRequest) -> bytes:
        first, self.last_replayed = await opening(broker, retry_ms, request.last_id, request.topics)
        return first

    @property
    def caught_up(self) -> bool:
        """Past the replay: live frames may go straight to the socket."""
        return self.last_replayed is None

    def frames(self, batch: list[Frame]) -> tuple[list[Frame], bool]:
        """What of `batch` to write, and whether the stream ends after it."""
        if self.last_replayed is not None:
            batch, self.last_replayed = skip_replayed(batch, self.last_replayed)
        frames, ended = until_end(batch)
        if ended:
            self.ending = "server shutdown"
        return frames, ended

    def close(self) -> None:
        """Unsubscribe, and log the stream's one access line; once only."""
        sub, self.sub = self.sub, None
        if sub is None:
            return
        sub.close()
        elapsed = asyncio.get_running_loop().time() - self._started
        ending = "evicted" if sub.evicted else "token expired" if sub.expired else self.ending
        note = "stream ended: " + ending
        log_access(log, (self._remote, "GET", self._path_qs), 200, None, elapsed, note)
