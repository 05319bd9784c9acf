"""`broadcaster publish` and `broadcaster listen`: command-line clients of a server;
`broadcaster token` mints a development JWT for them.

Anything that goes wrong is one line on stderr, `broadcaster <command>: <what is
wrong>`, and exit status 1; a mistake in the command line itself is argparse's
usage message and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from broadcaster import client
from broadcaster.auth.patterns import InvalidPattern
from broadcaster.auth.tokens import UnusableKey, mint
from broadcaster.client import ListenError, Retry, ServerEvent
from broadcaster.client.explain import describe, server_error

COMMANDS = ("publish", "listen", "token")
DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "BROADCASTER_URL"
TOKEN_ENV = "BROADCASTER_PUBLISH_TOKEN"
TOKEN_HINT = f"pass --token or set {TOKEN_ENV}"
LISTEN_TOKEN_ENV = "BROADCASTER_TOKEN"
SECRET_ENV = "BROADCASTER_JWT_SECRET"
PUBLISH_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)


class Failure(Exception):
    """What went wrong, in one line for a person; ends the command with status 1."""


def main(argv: Sequence[str]) -> int:
    parser, commands = _parsers()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would blame the top-level usage; the command's own is the useful one.
        commands[args.command].error(_unrecognized(unknown, commands[args.command]))
    try:
        if args.command == "token":
            return print_token(args)
        url = server_url(*_url_source(commands[args.command], args, os.environ))
        args.token = clean_token(args.token)
        if args.command == "publish" and args.data is None:
            if sys.stdin.isatty():
                raise Failure("give DATA, or pipe events to stdin, one JSON object per line")
            lines = batch_lines(_stdin_text(), args.topic, args.event)
            return asyncio.run(publish_batch(url, lines, args.token))
        if args.command == "publish":
            if args.topic is None:
                commands["publish"].error("--topic is required with DATA")
            data = _stdin_text() if args.data == "-" else args.data
            return asyncio.run(publish(url, args.topic, data, args.event, args.token))
        return asyncio.run(listen(url, args.topic, as_json=args.json, token=args.token))
    except Failure as failure:
        print(f"broadcaster {args.command}: {failure}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`listen | head -1`): end quietly, and keep the
        # interpreter's own final flush from failing on the same pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def usage_lines() -> list[str]:
    """Each command's usage line, for the server's `--help`."""
    _, commands = _parsers()
    return [sub.format_usage().removeprefix("usage: ").strip() for sub in commands.values()]


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="broadcaster")
    subparsers = parser.add_subparsers(dest="command", required=True)
    url_help = f"server (env {URL_ENV}; default {DEFAULT_URL})"
    pub = subparsers.add_parser(
        "publish",
        help="publish one event, or without DATA, the events on stdin (NDJSON)",
        usage="%(prog)s [--topic T] [--event E] [--url URL] [--token TOKEN] [DATA]",
    )
    pub.add_argument(
        "data",
        metavar="DATA",
        nargs="?",
        help="the event's data (UTF-8 text); - reads stdin; without it, stdin holds one"
        " JSON event per line, all published at once",
    )
    pub.add_argument("--topic", help="topic to publish on (with stdin events: where none is given)")
    pub.add_argument("--event", help="event type (default: message)")
    pub.add_argument("--url", help=url_help)
    pub.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (env {TOKEN_ENV})"
    )
    lis = subparsers.add_parser(
        "listen",
        help="print events as they arrive, reconnecting",
        usage="%(prog)s [--topic T ...] [--json] [--url URL] [--token TOKEN]",
    )
    lis.add_argument("--topic", action="append", help="topic to follow; repeat for several")
    lis.add_argument("--json", action="store_true", help="one JSON object per event")
    lis.add_argument("--url", help=url_help)
    lis.add_argument(
        "--token",
        default=os.environ.get(LISTEN_TOKEN_ENV),
        help=f"JWT for private topics, sent as a bearer token (env {LISTEN_TOKEN_ENV})",
    )
    # The URL used to be positional; old scripts keep working.
    lis.add_argument("old_url", nargs="?", metavar="URL", help=argparse.SUPPRESS)
    tok = subparsers.add_parser(
        "token",
        help="mint a development JWT signed with --jwt-secret",
        usage="%(prog)s [--sub-topic P ...] [--pub-topic P ...] [--ttl SECONDS] [--jwt-secret S]",
    )
    tok.add_argument("--sub-topic", action="append", default=[], help="pattern it may follow")
    tok.add_argument("--pub-topic", action="append", default=[], help="pattern it may publish to")
    tok.add_argument("--ttl", type=float, default=3600.0, help="seconds it lasts (default 3600)")
    tok.add_argument("--audience", help="its aud claim, for a server with --jwt-audience")
    tok.add_argument("--issuer", help="its iss claim, for a server with --jwt-issuer")
    tok.add_argument(
        "--jwt-secret", default=os.environ.get(SECRET_ENV), help=f"HS256 secret (env {SECRET_ENV})"
    )
    return parser, {"publish": pub, "listen": lis, "token": tok}


def clean_token(token: str | None) -> str | None:
    """A token pasted with its newline is fine; one that could not be a header value is not."""
    token = (token or "").strip()
    if any(c.isspace() or not c.isprintable() for c in token):
        raise Failure("--token holds spaces or control characters: it is not a token")
    return token or None


def print_token(args: argparse.Namespace) -> int:
    if not args.jwt_secret:
        raise Failure(f"no secret to sign with: pass --jwt-secret or set {SECRET_ENV}")
    if not args.sub_topic and not args.pub_topic:
        raise Failure("the token would allow nothing: give --sub-topic or --pub-topic")
    if not 0 < args.ttl <= 366 * 86400:
        raise Failure(f"--ttl {args.ttl:g}: give more than 0 and at most {366 * 86400} seconds")
    try:
        token = mint(
            args.jwt_secret, args.sub_topic, args.pub_topic, args.ttl, args.audience, args.issuer
        )
    except (InvalidPattern, UnusableKey) as error:
        raise Failure(str(error)) from None
    print(token)
    return 0


def _url_source(
    command: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[str, str]:
    """The server URL as given, and where it came from (for error messages)."""
    old_url: str | None = getattr(args, "old_url", None)
    if old_url is not None:
        if args.url is not None:
            command.error("give the server URL once, with --url")
        _note(args.command, "a URL without --url is deprecated; use --url URL")
        return old_url, "URL"
    if args.url is not None:
        return args.url, "--url"
    if environ.get(URL_ENV):
        return environ[URL_ENV], URL_ENV
    return DEFAULT_URL, "URL"


def server_url(text: str, source: str = "URL") -> URL:
    """`text` as an http(s) URL with a host, or a Failure saying what is missing."""
    if "://" not in text:
        guess = _with_scheme(text)
        hint = f"; did you mean {guess}?" if guess else ""
        raise Failure(f"{source} {text!r} needs http:// or https://{hint}")
    try:
        url = URL(text)
    except ValueError as error:
        raise Failure(f"{source} {text!r} is not a valid URL: {error}") from None
    if url.scheme not in ("http", "https"):
        raise Failure(f"{source} {text!r} is not an http:// or https:// URL")
    if not url.host or any(c.isspace() for c in url.host):
        raise Failure(f"{source} {text!r} has no valid host name")
    return url


def _with_scheme(text: str) -> str | None:
    try:
        url = URL("http://" + text)
    except ValueError:
        return None
    return str(url) if url.host and text[:1].isalnum() else None


def _stdin_text() -> str:
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Failure(f"stdin is not UTF-8 text: {error.reason} at byte {error.start}") from None


async def publish(url: URL, topic: str, data: str, event: str | None, token: str | None) -> int:
    body = {"topic": topic, "data": data} | ({"event": event} if event else {})
    endpoint, event_id = await _post(url, token, _event_id, json=body)
    if event_id is None:
        raise Failure(f"{endpoint} answered without an event id: is it a broadcaster server?")
    print(event_id)
    return 0


T = TypeVar("T")


async def _post(
    url: URL,
    token: str | None,
    read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
    headers: Mapping[str, str] | None = None,
    **body: Any,
) -> tuple[URL, T]:
    """POST to the server's /publish; `read` takes what a 200 says. Any other
    answer, or no answer, is a one-line `Failure`."""
    endpoint = _endpoint(url, "/publish")
    headers = dict(headers or {}) | ({"Authorization": f"Bearer {token}"} if token else {})
    async with aiohttp.ClientSession(timeout=PUBLISH_TIMEOUT) as session:
        try:
            async with session.post(endpoint, headers=headers, **body) as resp:
                if resp.status != 200:
                    message = await server_error(resp)
                    raise Failure(_refusal(endpoint, resp.status, message, bool(token)))
                return endpoint, await read(resp)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Failure(describe(error, url)) from None


def batch_lines(text: str, topic: str | None, event: str | None) -> list[str]:
    """stdin's events, one JSON object per line, with --topic and --event filled
    in where a line gives none; the server checks the rest, and names the line."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise Failure(f"stdin line {number} is not JSON: {error}") from None
        if isinstance(item, dict):
            defaults = {"topic": topic, "event": event}
            item = {k: v for k, v in defaults.items() if v is not None} | item
        lines.append(json.dumps(item, ensure_ascii=False))
    if not lines:
        raise Failure("no events on stdin: give DATA, or one JSON object per line on stdin")
    return lines


async def publish_batch(url: URL, lines: list[str], token: str | None) -> int:
    """All of `lines` in one request, published all or none; prints their ids in order."""
    body = "\n".join(lines).encode()
    ndjson = {"Content-Type": "application/x-ndjson"}
    endpoint, ids = await _post(url, token, _event_ids, data=body, headers=ndjson)
    if ids is None:
        raise Failure(f"{endpoint} answered without event ids: is it a broadcaster server?")
    print("\n".join(ids))
    return 0


async def _event_ids(resp: aiohttp.ClientResponse) -> list[str] | None:
    try:
        answer = await resp.json(content_type=None)
    except ValueError:
        return None
    ids = answer.get("ids") if isinstance(answer, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    return ids


def _refusal(endpoint: object, status: int, message: str, sent_token: bool) -> str:
    if status == 401 and sent_token:
        return f"server answered 401: {message}"
    if status == 401:
        # The server's own words are about the Authorization header, for HTTP users.
        return f"server answered 401: a publish token is required; {TOKEN_HINT}"
    if status == 403 and sent_token:
        return f"server answered 403: {message}; {TOKEN_HINT}"
    if status in (404, 405):  # the wrong place: say which place was asked
        return f"{endpoint} answered {status}: {message}; is --url the server's address?"
    return f"server answered {status}: {message}"


def _unrecognized(unknown: Sequence[str], parser: argparse.ArgumentParser) -> str:
    message = f"unrecognized arguments: {' '.join(unknown)}"
    options = re.findall(r"--[a-z][a-z-]*", parser.format_help())
    close = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1)
    return f"{message} (did you mean {close[0]}?)" if close else message


async def _event_id(resp: aiohttp.ClientResponse) -> str | None:
    try:
        answer = await resp.json(content_type=None)
    except ValueError:
        return None
    event_id = answer.get("id") if isinstance(answer, dict) else None
    return event_id if isinstance(event_id, str) else None


async def listen(
    url: URL, topics: list[str] | None, *, as_json: bool, token: str | None = None
) -> int:
    """Follow the stream until the server refuses it for good; on every drop,
    reconnect with Last-Event-ID (the library client's `listen` does)."""

    def note(retry: Retry) -> None:
        if retry.reason is not None:
            _note("listen", retry.reason)
        _note("listen", f"reconnecting in {retry.delay:g}s")

    try:
        async for event in client.listen(url, topics or (), token=token, on_retry=note):
            _print(event, as_json)
    except ListenError as error:
        raise Failure(str(error)) from None
    return 0


def _print(event: ServerEvent, as_json: bool) -> None:
    # An event without its own id: field (shutdown, some resyncs) shows none,
    # rather than the id that the spec carries over from the event before.
    shown = event.id if event.id_given else None
    if as_json:
        line = json.dumps(
            {"id": shown, "event": event.event, "data": event.data}, ensure_ascii=False
        )
    else:
        # Continuation lines are indented, so "a\nb" never reads as two events.
        data = event.data.replace("\n", "\n    ")
        line = f"{event.event}: {data}" if shown is None else f"[{shown}] {event.event}: {data}"
    print(line, flush=True)


def _note(command: str, text: str) -> None:
    print(f"broadcaster {command}: {text}", file=sys.stderr, flush=True)


def _endpoint(base: URL, path: str) -> URL:
    return base.with_path(path) if base.path in ("", "/") else base
