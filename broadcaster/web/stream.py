"""GET /events through aiohttp: the stream core's adapter for aiohttp's handler.

The front door (`front_door.py`) serves a fresh connection's plain request
itself, from the same core; this handler serves everything else (a kept-alive
connection's later requests, HTTP/1.0, HEAD) and answers every refusal.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, web

from broadcaster.fanout.broker import Subscription
from broadcaster.web import stream_core
from broadcaster.web.errors import ApiError
from broadcaster.web.keys import BROKER, POLICY, SETTINGS
from broadcaster.web.stream_core import Refusal, Stream


class EventStreamResponse(web.StreamResponse):
    # aiohttp's own web.Response sets this False to send its headers with the body;
    # here it puts the headers and the opening frame into one segment.
    # tests/test_stream.py fails if aiohttp stops reading it.
    _send_headers_immediately = False


async def events(request: web.Request) -> web.StreamResponse:
    """`GET /events`: one subscriber's SSE stream, with replay by Last-Event-ID.

    The query's `topic` (repeatable; `DEFAULT_TOPIC` if none) chooses the topics.
    A request the stream core refuses (a bad topic, a private one without a
    token, the client limit) gets a JSON error; a malformed Last-Event-ID is not
    refused but answered with a `resync` event. The stream lasts until the
    client leaves, the broker evicts it (too slow), its token expires
    (`reauth`) or the server shuts down (`shutdown`).
    """
    broker, settings = request.app[BROKER], request.app[SETTINGS]
    try:
        admitted = stream_core.admit(
            broker, settings, request.app[POLICY], request.query, request.headers
        )
    except Refusal as refusal:
        raise ApiError(refusal.status, refusal.message, refusal.headers) from None
    response = EventStreamResponse(headers=admitted.headers)
    # A finished stream's connection is never reused: EventSource opens a new one.
    response.force_close()
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    if request.version >= HttpVersion11:
        response.enable_chunked_encoding()
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
