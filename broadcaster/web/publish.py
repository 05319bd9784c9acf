"""POST /publish: authenticated, size-limited, strictly validated."""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qs

from aiohttp import web

from broadcaster.auth.policy import Policy
from broadcaster.auth.tokens import Grant, Refusal
from broadcaster.fanout.broker import BackendUnavailable
from broadcaster.web.authorization import api_error
from broadcaster.web.errors import ApiError
from broadcaster.web.keys import BROKER, POLICY, SETTINGS
from broadcaster.wire.topics import InvalidTopic, check_topic

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MAX_EVENT_TYPE_LENGTH = 64
RESERVED_EVENT_TYPES = frozenset({"resync", "shutdown", "reauth"})
FIELDS = frozenset({"topic", "event", "data"})


@dataclass(frozen=True, slots=True)
class PublishRequest:
    topic: str
    data: str
    event: str | None


async def publish(request: web.Request) -> web.Response:
    settings, policy = request.app[SETTINGS], request.app[POLICY]
    grant = authorize(request, settings.publish_token, policy)
    body = await read_limited(request, settings.max_event_bytes)
    message = parse_message(parse_fields(request.content_type, body), settings.max_topic_length)
    if grant is not None and not grant.publish.covers(message.topic):
        refuse(
            policy,
            Refusal(
                403, "not_covered", f"the token does not allow publishing to {message.topic!r}"
            ),
        )
    try:
        event = await request.app[BROKER].publish(message.topic, message.data, message.event)
    except BackendUnavailable as error:
        raise ApiError(503, f"cannot publish now: {error}", {"Retry-After": "1"}) from None
    return web.json_response({"id": str(event.id), "topic": event.topic, "event": event.type})


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


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it is known to exceed `limit`."""
    too_large = ApiError(413, f"body exceeds the limit of {limit} bytes (--max-event-bytes)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_fields(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type not in (JSON, FORM):
        raise ApiError(415, f"Content-Type must be {JSON} or {FORM}, not {content_type!r}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, f"body is not UTF-8: {error.reason} at byte {error.start}") from None
    # `curl -d '{...}'` labels JSON as a form; a form field never starts with "{".
    if content_type == JSON or text.lstrip().startswith("{"):
        return _json_object(text)
    return _form(text)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"body is not valid JSON: {error}") from None
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
