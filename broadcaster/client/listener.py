"""Follow a broadcaster stream from Python: `listen` yields its events, and
reconnects with `Last-Event-ID` whenever the connection drops."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from broadcaster.client.explain import describe, server_error
from broadcaster.wire.sse_parser import ServerEvent, SSEParser

MAX_BACKOFF_SECONDS = 30.0
# A stream may be quiet for as long as the server likes; only connecting is bounded.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)


class ListenError(Exception):
    """Retrying cannot help: the server refused the stream (a 4xx other than
    429, or 204, the SSE spec's "stop"), or the answer is not an event stream.
    The message says which, in the server's own words where it gave some."""


@dataclass(frozen=True, slots=True)
class Retry:
    """`listen` is about to reconnect: after `delay` seconds, because of
    `reason` (None when the stream simply ended, as at a server's shutdown)."""

    delay: float
    reason: str | None = None


def events_url(url: str | URL, topics: Iterable[str] = ()) -> URL:
    """The stream's URL: a server's bare address gets `/events`; any other path
    is taken as the stream's own (an application that mounts it elsewhere)."""
    if isinstance(topics, str):
        raise TypeError(f"topics is a list of names, not one string: topics=[{topics!r}]")
    base = URL(url)
    if base.scheme not in ("http", "https") or not base.host:
        raise ValueError(f"{str(url)!r} is not an http:// or https:// URL with a host")
    target = base.with_path("/events") if base.path in ("", "/") else base
    return target.extend_query([("topic", topic) for topic in topics])


async def listen(
    url: str | URL,
    topics: Iterable[str] = (),
    *,
    token: str | None = None,
    last_event_id: str | None = None,
    session: aiohttp.ClientSession | None = None,
    on_retry: Callable[[Retry], None] | None = None,
) -> AsyncGenerator[ServerEvent, None]:
    """Every event of `topics` on the server at `url`, for as long as you iterate.

    When the connection drops, or the server is busy (429, 5xx) or down, it
    reconnects after the server's `retry:` (else 1 s), doubling up to 30 s, or
    after its `Retry-After`, sending the last id seen as `Last-Event-ID`, so
    nothing is missed that the server's history still holds. `on_retry` hears
    of each reconnect and why. A refusal that retrying cannot change raises
    `ListenError`.

    The server's own events come through like any other, by `event` type:
    `resync` (your last id is not in its history: events may have been missed,
    so reload your state; the next reconnect starts from the id it carries),
    `shutdown` (the server is stopping; `listen` reconnects) and `reauth` (the
    token expired). `token` is sent as a bearer token, for private topics.

    Stop early with `contextlib.aclosing(listen(...))`, so the connection is
    closed at once; a `session` you pass is left open.
    """
    target = events_url(url, topics)
    own_session = session is None
    client = session if session is not None else aiohttp.ClientSession(timeout=TIMEOUT)
    parser = SSEParser()
    parser.last_id = last_event_id or ""
    backoff = Backoff()
    try:
        while True:
            reason, retry_after = None, None
            try:
                async with client.get(
                    target, headers=_headers(parser.last_id, token), timeout=TIMEOUT
                ) as resp:
                    reason, retry_after = await _busy(resp, target)
                    if reason is None:
                        backoff.reset()
                        async for chunk in resp.content.iter_any():
                            for event in parser.feed(chunk):
                                yield event
            except (aiohttp.ClientError, TimeoutError) as error:
                reason = describe(error, target)
            delay = backoff.next(parser.retry, retry_after)
            if on_retry is not None:
                on_retry(Retry(delay, reason))
            await asyncio.sleep(delay)
            parser = _fresh_parser(parser)
    finally:
        if own_session:
            await client.close()


def _headers(last_id: str, token: str | None) -> dict[str, str]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _busy(resp: aiohttp.ClientResponse, target: URL) -> tuple[str | None, float | None]:
    """None for a stream; the refusal and its Retry-After when it is worth
    retrying; `ListenError` when it is not."""
    where = target.with_query(None)
    if resp.status != 200:
        refusal = f"{where} answered {resp.status}: {await server_error(resp)}"
        # Only "busy" (429) and server trouble (5xx) may pass; a bad topic or a
        # wrong path stays one, and 204 is how the SSE spec says "stop".
        if resp.status != 429 and resp.status < 500:
            raise ListenError(refusal)
        return refusal, retry_after_seconds(resp.headers.get("Retry-After"))
    if resp.content_type != "text/event-stream":
        raise ListenError(f"{where} is not an event stream: it answered {resp.content_type}")
    return None, None


class Backoff:
    """Doubling delays, from the server's `retry:` (else 1 s) up to
    MAX_BACKOFF_SECONDS; a Retry-After answer is waited out in full."""

    def __init__(self) -> None:
        self._last = 0.0

    def reset(self) -> None:
        self._last = 0.0

    def next(self, retry_ms: int | None, retry_after: float | None) -> float:
        self._last = min(MAX_BACKOFF_SECONDS, max(self._last * 2, (retry_ms or 1000) / 1000))
        return max(self._last, retry_after or 0.0)


def retry_after_seconds(value: str | None) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date; None if absent or malformed."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _fresh_parser(old: SSEParser) -> SSEParser:
    # A half-received event must not leak into the next connection's stream.
    parser = SSEParser()
    parser.last_id, parser.retry = old.last_id, old.retry
    return parser
