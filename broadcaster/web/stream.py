"""GET /events through aiohttp: the stream core's adapter for aiohttp's handler.

The front door (`edge/front_door.py`) serves a fresh connection's plain request
itself, from the same core; this handler serves everything else (a kept-alive
connection's later requests, HTTP/1.0, HEAD) and answers every refusal. It is
also every stream of an application that embeds broadcaster (`setup`), where
`events_response` lets the application's own handlers stream.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import HttpVersion11, web

from broadcaster.auth.policy import Policy
from broadcaster.fanout.broker import Broker, Subscription
from broadcaster.ops.config import Settings
from broadcaster.web import stream_core
from broadcaster.web.errors import ApiError
from broadcaster.web.keys import BROKER, POLICY, SETTINGS
from broadcaster.web.stream_core import Refusal, Stream
from broadcaster.wire.origins import Headers


class EventStreamResponse(web.StreamResponse):
    # aiohttp's own web.Response sets this False to send its headers with the body;
    # here it puts the headers and the opening frame into one segment.
    # tests/test_stream.py fails if aiohttp stops reading it.
    _send_headers_immediately = False


def stream_response(request: web.Request, headers: Headers) -> EventStreamResponse:
    """The answer a stream is written to, not yet prepared."""
    response = EventStreamResponse(headers=headers)
    # A finished stream's connection is never reused: EventSource opens a new one.
    response.force_close()
    if request.version >= HttpVersion11 and request.method != "HEAD":
        response.enable_chunked_encoding()
    return response


async def events(request: web.Request) -> web.StreamResponse:
    """`GET /events`: one subscriber's SSE stream, with replay by Last-Event-ID.

    The query's `topic` (repeatable; `DEFAULT_TOPIC` if none) chooses the topics.
    A request the stream core refuses (a bad topic, a private one without a
    token, the client limit) gets a JSON error; a malformed Last-Event-ID is not
    refused but answered with a `resync` event. The stream lasts until the
    client leaves, the broker evicts it (too slow), its token expires
    (`reauth`) or the server shuts down (`shutdown`).
    """
    return await events_response(request)


async def events_response(
    request: web.Request, topics: Iterable[str] | None = None
) -> web.StreamResponse:
    """Answer `request` with an event stream of `topics`, from any handler of an
    application `broadcaster.setup` was given; returns once the stream has ended.

    Everything `GET /events` promises holds: replay from `Last-Event-ID` (header,
    or `?lastEventId=`), eviction of a client that cannot keep up, the client
    limit, order, and a `shutdown` event when the application stops. Without
    `topics`, the query's `topic` parameters choose, as for `GET /events`. A
    refusal is raised as a JSON `web.HTTPException` (400 for a bad topic, 503 at
    the client limit).
    """
    if isinstance(topics, str):
        raise TypeError(f"topics is a list of names, not one string: topics=[{topics!r}]")
    broker, settings, policy = _parts(request)
    try:
        admitted = stream_core.admit(
            broker,
            settings,
            policy,
            request.query,
            request.headers,
            topics=None if topics is None else list(topics),
        )
    except Refusal as refusal:
        raise ApiError(refusal.status, refusal.message, refusal.headers) from None
    response = stream_response(request, admitted.headers)
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    stream = Stream()
    sub = stream.open(broker, admitted, (request.remote, request.path_qs), request.transport)
    try:
        await response.prepare(request)
        await response.write(await stream.opening(broker, settings.retry_ms, admitted))
        await pump(stream, sub, response, _can_go_direct(response))
    except ConnectionResetError:
        pass
    finally:
        stream.close()
    return response


def _parts(request: web.Request) -> tuple[Broker, Settings, Policy]:
    """The broker and its rules, from the request's application or one it is
    mounted in: a user's handler sits in the application that was set up, a
    `GET /events` route in the sub-application `setup` adds."""
    config = request.config_dict
    if BROKER not in config:
        raise RuntimeError(
            "no broker on this application: call broadcaster.setup(app) before serving it"
        )
    return config[BROKER], config[SETTINGS], config[POLICY]


def _can_go_direct(response: web.StreamResponse) -> bool:
    """Whether the broker may write pre-framed HTTP chunks straight to the socket."""
    return response.chunked and not response.compression


async def pump(
    stream: Stream, sub: Subscription, response: web.StreamResponse, direct: bool
) -> None:
    """Drain the queue, one write per wake-up, until END.

    Each batch taken from the queue is written before the next await, which is
    what lets the broker write straight to the socket whenever the queue is empty.
    """
    while True:
        if direct and stream.caught_up:
            sub.go_direct()
            direct = False
        while (queue := sub.queue) is None:
            await sub.backlog_created()
        frames, ended = stream.frames([await queue.get(), *sub.take_all()])
        if frames:
            await response.write(b"".join(frame.payload for frame in frames))
        if ended:
            return
