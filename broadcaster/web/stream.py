"""GET /events: one subscriber's SSE stream, with replay by Last-Event-ID.

`events` is aiohttp's handler, and the reference: the front door
(`front_door.py`) streams a fresh connection's plain request itself, built from
the same parts (topics, capacity, opening, replay skipping, the end-of-stream
log line), and hands aiohttp everything else.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from functools import lru_cache

from aiohttp import HttpVersion11, web
from multidict import MultiMapping

from broadcaster import sse
from broadcaster.auth.carriers import token_from
from broadcaster.auth.policy import Policy
from broadcaster.auth.tokens import Refusal
from broadcaster.broker import END, Broker, Subscription
from broadcaster.config import Settings
from broadcaster.events import EventId, Frame
from broadcaster.logs import log_access
from broadcaster.ticker import TOPIC as DEFAULT_TOPIC
from broadcaster.topics import InvalidTopic, check_topic
from broadcaster.web.authorization import api_error
from broadcaster.web.errors import ApiError
from broadcaster.web.keys import BROKER, POLICY, SETTINGS

log = logging.getLogger("broadcaster.access")

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # nginx buffers proxied responses unless told not to, which would hold events back.
    "X-Accel-Buffering": "no",
}
RETRY_AFTER_SECONDS = "5"
SHUTDOWN_DATA = sse.encode(json.dumps({"reason": "server shutting down"}), event="shutdown")
REAUTH = Frame.of(sse.encode(json.dumps({"reason": "token expired"}), event="reauth"))
# Newer than any id a backend issues. Every backend answers a replay after an id
# it has not reached with a resync naming its newest id, which is how a stream
# with a malformed Last-Event-ID learns the id its resync must carry.
BEYOND_ANY_ID = EventId(10**20, 0)


class EventStreamResponse(web.StreamResponse):
    # aiohttp's own web.Response sets this False to send its headers with the body;
    # here it puts the headers and the opening frame into one segment.
    _send_headers_immediately = False


def topics_from_query(query: MultiMapping[str], max_topics: int, max_length: int) -> frozenset[str]:
    names = query.getall("topic", [DEFAULT_TOPIC])
    if len(names) > max_topics:
        raise ApiError(
            400, f"too many topics: {len(names)} given, at most {max_topics} (--max-topics)"
        )
    try:
        return _shared(tuple(sorted(check_topic(name, max_length) for name in names)))
    except InvalidTopic as error:
        raise ApiError(400, str(error)) from None


def authorize(
    policy: Policy,
    topics: frozenset[str],
    headers: Mapping[str, str],
    query: Mapping[str, str],
    count: bool = True,
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
    except Refusal as refusal:
        if count:  # the front door hands a refused request to aiohttp, which counts it
            policy.count(refusal)
        raise api_error(refusal) from None


@lru_cache(maxsize=4096)
def _shared(names: tuple[str, ...]) -> frozenset[str]:
    """One set object for every stream that follows the same topics."""
    return frozenset(names)


def check_capacity(broker: Broker, settings: Settings) -> None:
    if broker.clients >= settings.max_clients:
        raise ApiError(
            503,
            f"server is at its limit of {settings.max_clients} clients; retry later",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )


def last_event_id(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The header wins; `?lastEventId=` is for clients that cannot set headers."""
    return headers.get("Last-Event-ID") or query.get("lastEventId") or None


async def events(request: web.Request) -> web.StreamResponse:
    broker, settings = request.app[BROKER], request.app[SETTINGS]
    topics = topics_from_query(request.query, settings.max_topics, settings.max_topic_length)
    expires = authorize(request.app[POLICY], topics, request.headers, request.query)
    check_capacity(broker, settings)
    response = EventStreamResponse(headers=HEADERS)
    # A finished stream's connection is never reused: EventSource opens a new one.
    response.force_close()
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    if request.version >= HttpVersion11:
        response.enable_chunked_encoding()
    started = asyncio.get_running_loop().time()
    ending = "client disconnected"
    with broker.subscribe(topics, request.transport) as sub:
        reauth_at(sub, expires)
        try:
            await response.prepare(request)
            first, after = await opening(
                broker, settings.retry_ms, last_event_id(request.headers, request.query), topics
            )
            await response.write(first)
            ending = await _pump(sub, response, after, _can_go_direct(response))
        except ConnectionResetError:
            pass
        finally:
            elapsed = asyncio.get_running_loop().time() - started
            log_end(request.remote, request.method, request.path_qs, elapsed, sub, ending)
    return response


def reauth_at(sub: Subscription, expires: float | None) -> None:
    """A stream that needed a token ends when the token does, with `event: reauth`:
    the client fetches a new token and reconnects with Last-Event-ID."""
    if expires is not None:
        sub.end_at(expires, REAUTH)


def log_end(
    remote: str | None, method: str, path_qs: str, elapsed: float, sub: Subscription, ending: str
) -> None:
    note = "stream ended: " + (
        "evicted" if sub.evicted else "token expired" if sub.expired else ending
    )
    log_access(log, (remote, method, path_qs), 200, None, elapsed, note)


async def opening(
    broker: Broker, retry_ms: int, last_id: str | None, topics: frozenset[str]
) -> tuple[bytes, EventId | None]:
    """The first write: retry and a comment (so `onopen` fires now), then replay.

    Returns the bytes and the last replayed id, at or below which queued live
    frames are duplicates of the replay.
    """
    head = preamble(retry_ms)
    if last_id is None:
        return head, None
    try:
        last = EventId.parse(last_id)
    except ValueError as error:
        newest = (await broker.replay(BEYOND_ANY_ID, topics)).head
        return head + _resync(str(error), newest), None
    replay = await broker.replay(last, topics)
    if not replay.complete:
        reason = f"event id {last} is unknown or older than the history"
        return head + _resync(reason, replay.head), None
    frames = b"".join(event.frame.data for event in replay.events)
    return head + frames, replay.head


@lru_cache(maxsize=8)
def preamble(retry_ms: int) -> bytes:
    """Encoded once, not per connection."""
    return sse.retry(retry_ms) + sse.comment("connected")


def _resync(reason: str, head: EventId | None) -> bytes:
    # Carrying the newest id means the client's next reconnect starts from here.
    data = json.dumps({"reason": reason})
    return sse.encode(data, id=None if head is None else str(head), event="resync")


def _can_go_direct(response: web.StreamResponse) -> bool:
    """Whether the broker may write pre-framed HTTP chunks straight to the socket."""
    return response.chunked and not response.compression


async def _pump(
    sub: Subscription, response: web.StreamResponse, after: EventId | None, direct: bool
) -> str:
    """Drain the queue, one write per wake-up, until END.

    Each batch taken from the queue is written before the next await, which is
    what lets the broker write straight to the socket whenever the queue is empty.
    """
    while True:
        if after is None and direct:
            # Caught up with the replay: from here on, live frames may go direct.
            sub.go_direct()
            direct = False
        while (queue := sub.queue) is None:
            await sub.backlog_created()
        batch = [await queue.get(), *sub.take_all()]
        if after is not None:
            batch, after = skip_replayed(batch, after)
        frames, ended = until_end(batch)
        if frames:
            await response.write(b"".join(frame.data for frame in frames))
        if ended:
            return "server shutdown"


def until_end(batch: list[Frame]) -> tuple[list[Frame], bool]:
    """The frames before END, and whether END came."""
    for index, frame in enumerate(batch):
        if frame is END:
            return batch[:index], True
    return batch, False


def skip_replayed(batch: list[Frame], after: EventId) -> tuple[list[Frame], EventId | None]:
    """Drop frames already sent by the replay; stop checking once past it."""
    frames = [part for frame in batch for part in (frame.parts or (frame,))]
    kept = [f for f in frames if f.id is None or f.id > after]
    past = any(f.id is not None and f.id > after for f in kept)
    return kept, None if past else after
