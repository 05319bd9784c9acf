"""POST /publish: authenticated, size-limited, strictly validated; one event,
or a batch (a JSON array, or NDJSON) published all or nothing."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qs

from aiohttp import web

from broadcaster.auth.policy import Policy
from broadcaster.auth.tokens import Grant, Refusal
from broadcaster.fanout.broker import BackendUnavailable
from broadcaster.ops.config import Settings
from broadcaster.ops.logs import Summarised
from broadcaster.web.authorization import api_error
from broadcaster.web.errors import ApiError
from broadcaster.web.keys import ARRIVED, BROKER, LAG, METRICS, POLICY, SETTINGS, THROTTLED
from broadcaster.wire.events import Event
from broadcaster.wire.topics import InvalidTopic, check_topic

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
NDJSON = "application/x-ndjson"
MAX_EVENT_TYPE_LENGTH = 64
RESERVED_EVENT_TYPES = frozenset({"resync", "shutdown", "reauth"})
FIELDS = frozenset({"topic", "event", "data"})
REFUSALS = Summarised(logging.getLogger("broadcaster.publish"))
"""Under overload the throttle refuses thousands a second: the log says so once
every 10 s, and broadcaster_publish_throttled_total counts each."""


@dataclass(frozen=True, slots=True)
class PublishRequest:
    topic: str
    data: str
    event: str | None


async def publish(request: web.Request) -> web.Response:
    settings, policy = request.app[SETTINGS], request.app[POLICY]
    grant = authorize(request, settings.publish_token, policy)
    check_lag(request, settings.max_publish_lag_ms)
    body = await read_body(request, settings.max_publish_bytes)
    batch = is_batch(request.content_type, body)
    if batch:
        messages = parse_batch(request.content_type, body, settings)
    else:
        if len(body) > settings.max_event_bytes:
            raise event_too_large(settings.max_event_bytes)
        fields = parse_fields(request.content_type, body)
        messages = [parse_message(fields, settings.max_topic_length)]
    if grant is not None:
        check_covered(policy, grant, messages, batch)
    drafts = [(m.topic, m.data, m.event) for m in messages]
    try:
        events = await request.app[BROKER].publish_many(drafts)
    except BackendUnavailable as error:
        raise ApiError(503, f"cannot publish now: {error}", {"Retry-After": "1"}) from None
    return web.json_response(answer(events, batch))


def answer(events: Sequence[Event], batch: bool) -> dict[str, Any]:
    """A batch's ids in order; one event's id, topic and type."""
    if batch:
        return {"ids": [str(event.id) for event in events]}
    (event,) = events
    return {"id": str(event.id), "topic": event.topic, "event": event.type}


def check_lag(request: web.Request, bound_ms: int) -> None:
    """503 once what is published now would reach subscribers later than the
    bound: it waited its turn behind pipelined requests, and the loop runs late
    (behind fan-outs it cannot keep up with). Accepting more makes both worse;
    a refusal costs a fraction of a fan-out, so refusing is how the server
    catches up."""
    now, lag = time.perf_counter(), request.app[LAG]
    lag.wanted()
    arrived = request.get(ARRIVED)
    wait = max(lag.seconds(), now - arrived if arrived is not None else 0.0)
    request.app[METRICS].publish_wait_seconds.observe(wait)
    if bound_ms and wait * 1000 > bound_ms:
        request.app[METRICS].publish_throttled.inc()
        request[THROTTLED] = True
        words = (
            f"too busy: events wait {wait * 1000:.0f} ms for their fan-out, over the"
            f" {bound_ms} ms bound (--max-publish-lag-ms)"
        )
        REFUSALS.warning(f"Publishing refused, {words}")
        raise ApiError(503, f"{words}; retry later", {"Retry-After": "1"})


def check_covered(
    policy: Policy, grant: Grant, messages: list[PublishRequest], batch: bool
) -> None:
    for index, message in enumerate(messages, 1):
        if not grant.publish.covers(message.topic):
            where = f"item {index}: " if batch else ""
            words = f"{where}the token does not allow publishing to {message.topic!r}"
            refuse(policy, Refusal(403, "not_covered", words))


def authorize(request: web.Request, token: str | None, policy: Policy) -> Grant | None:
    """None when the request may publish to any topic (the publish token, or
    loopback when no credentials are configured); the grant of its JWT, whose
    publish claim must then cover the topic; else a 401/403."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if token is None and (policy.verifier is None or not given):
        if not is_loopback(request.remote):
            raise ApiError(
                403, "no publish token is configured, so only loopback clients may publish"
            )
        return None
    if not given:
        wrong = f"{scheme[:16]!r} credentials are not accepted" if header.strip() else ""
        raise ApiError(
            401,
            f"{wrong or 'missing credentials'}: send 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": 'Bearer realm="publish"'},
        )
    # Constant time, so the answer's timing does not reveal how much of the token matched.
    if token is not None and hmac.compare_digest(given.encode(), token.encode()):
        return None
    if policy.verifier is None:
        raise ApiError(403, "wrong publish token")
    try:
        return policy.verify(given, "publishing needs a token")
    except Refusal as refusal:
        if token is not None and refusal.reason == "malformed":
            # Not a JWT at all: most likely a mistyped publish token.
            raise ApiError(403, "wrong publish token") from None
        refuse(policy, refusal)


def refuse(policy: Policy, refusal: Refusal) -> NoReturn:
    policy.count(refusal)
    raise api_error(refusal) from None


def is_loopback(remote: str | None) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on dual-stack sockets
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, within aiohttp's `client_max_size` (the app sets it to `limit`);
    refused with 413 before reading when its Content-Length is already over."""
    too_large = ApiError(413, f"body exceeds the limit of {limit} bytes (--max-publish-bytes)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


def event_too_large(limit: int, where: str = "") -> ApiError:
    return ApiError(413, f"{where}event exceeds the limit of {limit} bytes (--max-event-bytes)")


def is_batch(content_type: str, body: bytes) -> bool:
    """NDJSON, or a JSON array: a JSON object or a form is one event."""
    if content_type == NDJSON:
        return True
    return content_type in (JSON, FORM) and body.lstrip()[:1] == b"["


def parse_batch(content_type: str, body: bytes, settings: Settings) -> list[PublishRequest]:
    """Every item, or a 400 (413 for an oversized one) naming the first bad one."""
    text = _utf8(body)
    items = _ndjson(text) if content_type == NDJSON else [("", v) for v in _json_array(text)]
    messages = []
    # Counted from 1, as people count (and as NDJSON's lines are).
    for index, (where, item) in enumerate(items, 1):
        try:
            if not isinstance(item, dict):
                raise ApiError(400, "must be a JSON object with topic, data and optional event")
            message = parse_message(item, settings.max_topic_length)
        except ApiError as error:
            raise ApiError(error.status_code, f"item {index}{where}: {error.message}") from None
        if len(message.data.encode()) > settings.max_event_bytes:
            raise event_too_large(settings.max_event_bytes, f"item {index}{where}: ")
        messages.append(message)
    if not messages:
        raise ApiError(400, "the batch is empty: send at least one event")
    return messages


def _ndjson(text: str) -> list[tuple[str, Any]]:
    """Each line that is not blank, parsed, with where it is for error messages."""
    items = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                items.append((f" (line {number})", json.loads(line)))
            except json.JSONDecodeError as error:
                raise ApiError(400, f"line {number} is not valid JSON: {error}") from None
    return items


def _json_array(text: str) -> list[Any]:
    value = _json(text)
    if not isinstance(value, list):
        raise ApiError(400, "body must be a JSON array of events")
    return value


def parse_fields(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type not in (JSON, FORM):
        raise ApiError(
            415, f"Content-Type must be {JSON}, {NDJSON} or {FORM}, not {content_type!r}"
        )
    text = _utf8(body)
    # `curl -d '{...}'` labels JSON as a form; a form field never starts with "{".
    if content_type == JSON or text.lstrip().startswith("{"):
        return _json_object(text)
    return _form(text)


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, f"body is not UTF-8: {error.reason} at byte {error.start}") from None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"body is not valid JSON: {error}") from None


def _json_object(text: str) -> dict[str, Any]:
    value = _json(text)
    if not isinstance(value, dict):
        raise ApiError(400, "body must be a JSON object with topic, data and optional event")
    return value


def _form(text: str) -> dict[str, Any]:
    try:
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"body is not a valid form: {error}") from None
    repeated = sorted(name for name, values in pairs.items() if len(values) > 1)
    if repeated:
        raise ApiError(400, f"form field given more than once: {', '.join(repeated)}")
    return {name: values[0] for name, values in pairs.items()}


def parse_message(fields: dict[str, Any], max_topic_length: int) -> PublishRequest:
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; expected topic, event, data")
    return PublishRequest(
        topic=_topic(fields.get("topic"), max_topic_length),
        data=_data(fields),
        event=_event_type(fields.get("event")),
    )


def _topic(value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "field 'topic' is required and must be a string")
    try:
        return check_topic(value, max_length)
    except InvalidTopic as error:
        raise ApiError(400, str(error)) from None


def _data(fields: dict[str, Any]) -> str:
    if "data" not in fields:
        raise ApiError(400, "field 'data' is required")
    value = fields["data"]
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    _require_utf8("data", text)
    return text


def _event_type(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_EVENT_TYPE_LENGTH:
        raise ApiError(
            400, f"field 'event' must be a string of 1 to {MAX_EVENT_TYPE_LENGTH} characters"
        )
    if any(c in value for c in "\r\n\x00"):
        raise ApiError(400, "field 'event' must not contain CR, LF or NUL")
    if value in RESERVED_EVENT_TYPES:
        raise ApiError(400, f"event type {value!r} is reserved for the server")
    _require_utf8("event", value)
    return value


def _require_utf8(name: str, text: str) -> None:
    # JSON can spell lone surrogates ("\ud800"), which no UTF-8 stream can carry.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, f"field {name!r} holds a lone surrogate, which is not UTF-8 text"
        ) from None
