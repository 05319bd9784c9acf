"""`/.well-known/mercure`: the Mercure protocol's hub endpoint, on the same broker.

`POST` publishes an update (form fields `topic`, repeatable, the first one
canonical; `data`, `private`, `id`, `type`, `retry`) and answers its id as
text. `GET` subscribes with `match`/`match_exact` and `match_urlpattern`
matchers, and streams through the stream core like `/events`: the same
subscription, eviction, heartbeats, shutdown event and duplicate-free replay.
Tokens are the same JWTs `/events` reads (`auth/tokens.py` reads Mercure's
claims too); refusals follow RFC 6750.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import parse_qsl, unquote, unquote_to_bytes, urljoin, urlsplit

from aiohttp import web
from multidict import MultiMapping

from broadcaster.auth.carriers import bearer, cookie
from broadcaster.auth.policy import Policy
from broadcaster.auth.tokens import Grant, Refusal, challenge
from broadcaster.fanout.broker import BackendUnavailable, Broker
from broadcaster.fanout.mercure_router import Follower, Router, TooManyPatterns
from broadcaster.web import stream_core
from broadcaster.web.errors import ApiError
from broadcaster.web.keys import BROKER, MERCURE, POLICY, SETTINGS
from broadcaster.web.publish import (
    FORM,
    RESERVED_EVENT_TYPES,
    authorize,
    event_too_large,
    read_body,
)
from broadcaster.web.stream import pump, stream_response
from broadcaster.web.stream_core import Stream, StreamRequest
from broadcaster.wire.events import PRIVATE_ROUTE, EventId, Mercure
from broadcaster.wire.matchers import BASE, EXACT, URLPATTERN, InvalidMatcher, Matcher, check_text

PATH = "/.well-known/mercure"
COOKIES = ("__Secure-mercure_access_token", "mercureAuthorization")
"""The cookie the spec recommends, and the one the reference hub reads."""
HOW_TO_SEND = f"send 'Authorization: Bearer <token>' or the {COOKIES[1]!r} cookie"
MATCH_PARAMETERS = {"match": EXACT, "match_exact": EXACT, "match_urlpattern": URLPATTERN}
EARLIEST = "earliest"
LAST_EVENT_ID_HEADER = "Mercure-Last-Event-ID"
RESERVED_TYPES = RESERVED_EVENT_TYPES | {"mercure"}
OWN_ID_SHAPE = re.compile(r"\s*\d+-\d+\s*")
"""This hub's ids (`<epoch>-<seq>`): a publisher's id of that shape would be
taken for one of them when a subscriber resumes after it."""
SLASH_SCHEMES = frozenset({"", "http", "https"})
"""Where a URL parser reads `\\` as `/` (WHATWG special schemes; relative topics)."""
_UNRESERVED = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


DISCOVERY = f'<{PATH}>; rel="mercure"'
"""The hub link (relative: RFC 8288 resolves it against the page's URL)."""
DISCOVERED = frozenset({"/", PATH})


async def discovery(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """An `on_response_prepare` hook: the page and the hub's own answers name the hub."""
    if request.path in DISCOVERED and response.status < 400:
        response.headers.setdefault("Link", DISCOVERY)


# -- publishing -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Update:
    topics: tuple[str, ...]
    data: str
    type: str | None
    mercure: Mercure


async def publish(request: web.Request) -> web.Response:
    settings, policy, broker = request.app[SETTINGS], request.app[POLICY], request.app[BROKER]
    grant = authorize_publisher(request, settings.publish_token, policy)
    if request.content_type != FORM:
        raise ApiError(415, f"Content-Type must be {FORM}, not {request.content_type!r}")
    body = await read_body(request, settings.max_publish_bytes)
    if len(body) > settings.max_event_bytes:
        raise event_too_large(settings.max_event_bytes)
    update = parse_update(body, settings.max_topics)
    if grant is not None:
        for topic in update.topics:  # every topic, canonical and alternate (the spec)
            if not grant.publish.covers(topic):
                refuse(
                    policy,
                    Refusal(
                        403,
                        "not_covered",
                        f"the token does not allow publishing to {topic[:200]!r}",
                    ),
                )
    canonical = update.topics[0]
    # A private update reaches native streams only on a topic whose every stream
    # was admitted with a token for it: a --private-topics one.
    route = (
        PRIVATE_ROUTE
        if update.mercure.private and not policy.needs_token([canonical])
        else canonical
    )
    try:
        event = await broker.publish(route, update.data, update.type, update.mercure)
    except BackendUnavailable as error:
        raise ApiError(503, f"cannot publish now: {error}", {"Retry-After": "1"}) from None
    return web.Response(text=event.wire_id, content_type="text/plain", charset="utf-8")


def parse_update(body: bytes, max_topics: int) -> Update:
    try:
        # Not strict_parsing: the form standard skips empty pairs (`a=1&&b=2`, a
        # trailing `&`), and a bare `private` counts like `private=`.
        pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"body is not a valid UTF-8 form: {error}") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    topics = fields.get("topic", [])
    if not topics:
        raise ApiError(400, "field 'topic' is required")
    if len(topics) > max_topics:
        raise ApiError(
            413, f"too many topics: {len(topics)} given, at most {max_topics} (--max-topics)"
        )
    try:
        for topic in topics:
            check_topic(topic)
        custom_id = _single(fields, "id")
        if custom_id is not None:
            check_id(custom_id)
        type_ = _single(fields, "type")
        if type_ is not None:
            check_text(type_, "field 'type'", 64)
            if type_ in RESERVED_TYPES:
                raise InvalidMatcher(f"event type {type_!r} is reserved for the hub")
        retry = _single(fields, "retry")
        if retry is not None and not (retry.isascii() and retry.isdigit() and len(retry) <= 9):
            raise InvalidMatcher("field 'retry' must be milliseconds, in ASCII digits")
    except InvalidMatcher as error:
        raise ApiError(400, str(error)) from None
    data = _single(fields, "data") or ""
    mercure = Mercure(
        tuple(topics), "private" in fields, custom_id, None if retry is None else int(retry)
    )
    return Update(tuple(topics), data, type_ or None, mercure)


def _single(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise InvalidMatcher(f"field {name!r} given more than once")
    return values[0]


def check_topic(topic: str) -> None:
    check_text(topic, "topic")
    if topic == "*":
        raise InvalidMatcher("topic '*' is reserved: it is the wildcard matcher")
    if in_hub_namespace(topic):
        raise InvalidMatcher(f"topic {topic[:80]!r} is in the hub's reserved namespace {PATH}")


def check_id(custom_id: str) -> None:
    check_text(custom_id, "field 'id'")
    if custom_id.startswith("#") or custom_id == EARLIEST:
        raise InvalidMatcher("field 'id' must not start with '#' nor be 'earliest'")
    if OWN_ID_SHAPE.fullmatch(custom_id):
        raise InvalidMatcher(
            f"field 'id' {custom_id[:80]!r} has the shape of this hub's own ids"
            " (<digits>-<digits>), which would make resuming after it ambiguous"
        )


def in_hub_namespace(topic: str) -> bool:
    """Whether `topic`, resolved against the hub's URL, names a path under it;
    dot-segments removed and unreserved characters decoded first, so that
    `/.well-known/%6Dercure/x` or `/a/../.well-known/mercure` are caught too,
    and `\\` read as `/` where a browser's URL parser reads it so."""
    try:
        if urlsplit(topic).scheme.lower() in SLASH_SCHEMES:
            topic = topic.replace("\\", "/")
        path = urlsplit(urljoin(BASE, _UNRESERVED.sub(lambda m: unquote(m[0]), topic))).path
    except ValueError:
        return False
    path = _without_dot_segments(path)
    return path == PATH or path.startswith(PATH + "/")


def _without_dot_segments(path: str) -> str:
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(kept) > 1:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    return "/".join(kept)


def token_of(headers: Mapping[str, str], cookie_name: str) -> str | None:
    """The `Authorization: Bearer` token; without that header, a Mercure cookie
    (or this server's); never a query parameter (the spec forbids it)."""
    if "Authorization" in headers:
        return bearer(headers["Authorization"]) or ""
    header = headers.get("Cookie")
    for name in (*COOKIES, cookie_name):
        if (token := cookie(header, name)) is not None:
            return token
    return None


def authorize_publisher(
    request: web.Request, publish_token: str | None, policy: Policy
) -> Grant | None:
    """None when the request may publish anywhere (the publish token, or loopback
    when no credentials are configured); else the grant of its JWT."""
    if policy.verifier is None:
        # No key to read a JWT with: the rule of native /publish, which ignores
        # a token it cannot verify (Symfony's publisher always sends one).
        return authorize(request, publish_token, policy)
    token = token_of(request.headers, policy.cookie_name)
    if token is not None and publish_token is not None and _same(token, publish_token):
        return None
    if token is None:
        refuse(policy, Refusal(401, "missing", f"publishing needs a token: {HOW_TO_SEND}"))
    if token == "":
        refuse(
            policy, Refusal(401, "malformed", "the Authorization header is not 'Bearer <token>'")
        )
    try:
        return policy.verify(token, "publishing needs a token")
    except Refusal as refusal:
        refuse(policy, refusal)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def refuse(policy: Policy, refusal: Refusal) -> NoReturn:
    policy.count(refusal)
    raise ApiError(refusal.status, refusal.message, challenge(refusal, on_403=True)) from None


# -- subscribing ------------------------------------------------------------


def check_utf8(raw_query: str) -> None:
    """400 unless the query string decodes as UTF-8: the parsed query would
    have put U+FFFD in place of bad bytes, a matcher no one asked for. The
    whole string at once is enough, since `&` and `=` are no UTF-8 continuation."""
    try:
        unquote_to_bytes(raw_query).decode()
    except UnicodeDecodeError as error:
        raise ApiError(400, f"the query string is not valid UTF-8: {error}") from None


def matchers_from(query: MultiMapping[str], max_matchers: int) -> tuple[Matcher, ...]:
    unknown = sorted(
        {name for name in query if name.lower().startswith("match")} - set(MATCH_PARAMETERS)
    )
    if unknown:
        raise ApiError(
            400,
            f"unknown matcher parameter(s) {', '.join(unknown)[:200]}:"
            " use match, match_exact or match_urlpattern",
        )
    found = [
        (kind, value) for name, kind in MATCH_PARAMETERS.items() for value in query.getall(name, [])
    ]
    if not found:
        raise ApiError(
            400, "name at least one topic: ?match=<topic> or ?match_urlpattern=<pattern>"
        )
    if len(found) > max_matchers:
        raise ApiError(
            400, f"too many matchers: {len(found)} given, at most {max_matchers} (--max-topics)"
        )
    try:
        return tuple(dict.fromkeys(Matcher.parse(kind, value) for kind, value in found))
    except InvalidMatcher as error:
        raise ApiError(400, str(error)) from None


def reader_of(request: web.Request, policy: Policy) -> tuple[Grant | None, float | None]:
    """A subscriber's grant, when it sent a token: one in the Authorization
    header that fails is refused, though without it the subscriber would read
    public updates. A cookie that fails is ignored (the browser sends it for
    the whole site; it may be stale or another app's), as is any token when
    this server has no key to verify one with."""
    token = token_of(request.headers, policy.cookie_name)
    if token is None or policy.verifier is None:
        return None, None
    try:
        if token == "":
            raise Refusal(401, "malformed", "the Authorization header is not 'Bearer <token>'")
        grant = policy.verify(token, "")
    except Refusal as refusal:
        if "Authorization" not in request.headers:
            return None, None
        refuse(policy, refusal)
    return grant, grant.expires


async def subscribe(request: web.Request) -> web.StreamResponse:
    broker, settings, policy = request.app[BROKER], request.app[SETTINGS], request.app[POLICY]
    check_utf8(request.rel_url.raw_query_string)
    matchers = matchers_from(request.query, settings.max_topics)
    grant, expires = reader_of(request, policy)
    try:
        stream_core.check_capacity(broker, settings)
    except stream_core.Refusal as refusal:
        raise ApiError(refusal.status, refusal.message, refusal.headers) from None
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or None
    headers = stream_core.response_headers(request.headers.get("Origin"), settings.cors_origins)
    admitted = StreamRequest(frozenset(), last_id, headers, expires)
    response = stream_response(request, headers)
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    router = request.app[MERCURE]
    stream = Stream()
    sub = stream.open(broker, admitted, (request.remote, request.path_qs), request.transport)
    # Registered before the replay is read, so nothing falls between the two.
    follower = Follower(sub, matchers, None if grant is None else grant.subscribe.covers)
    try:
        router.add(follower)
    except TooManyPatterns as error:
        stream.close()
        raise ApiError(
            503, f"cannot follow a new URL pattern now: {error}", {"Retry-After": "10"}
        ) from None
    try:
        first, stream.last_replayed, anchor = await opening(
            broker, router, follower, settings.retry_ms, last_id
        )
        if anchor is not None:
            response.headers[LAST_EVENT_ID_HEADER] = anchor
        await response.prepare(request)
        await response.write(first)
        await pump(stream, sub, response, response.chunked and not response.compression)
    except ConnectionResetError:
        pass
    finally:
        router.remove(follower)
        stream.close()
    return response


async def opening(
    broker: Broker, router: Router, follower: Follower, retry_ms: int, last_id: str | None
) -> tuple[bytes, EventId | None, str | None]:
    """The first write (retry, a comment, the replay), the last replayed id, and
    the `Mercure-Last-Event-ID` answer: the id the replay starts after, or
    `earliest` when it is the whole history (asked for, or the id is unknown)."""
    head = stream_core.preamble(retry_ms)
    if last_id is None:
        return head, None, None
    start = None if last_id == EARLIEST else await resolve(broker, last_id)
    replay = None if start is None else await broker.replay(start, None)
    anchor = last_id
    if replay is None or not replay.complete:
        # Unknown or older than the history: everything the history holds.
        replay, anchor = await broker.replay(None, None), EARLIEST
    frames = b"".join(e.frame.payload for e in replay.events if router.wants(follower, e))
    return head + frames, replay.newest, anchor


async def resolve(broker: Broker, last_id: str) -> EventId | None:
    """The event an id names: one of ours, or a publisher's own id."""
    try:
        return EventId.parse(last_id)
    except ValueError:
        return await broker.find(last_id)
