"""`broadcaster publish` and `broadcaster listen`: command-line clients of a server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

import aiohttp
from yarl import URL

from broadcaster.sse_parser import ServerEvent, SSEParser

COMMANDS = ("publish", "listen")
DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "BROADCASTER_PUBLISH_TOKEN"
MAX_BACKOFF_SECONDS = 30.0


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "publish":
            return asyncio.run(publish(args.url, args.topic, args.data, args.event, args.token))
        return asyncio.run(listen(args.url, args.topic, as_json=args.json))
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broadcaster")
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish", help="publish one event")
    pub.add_argument("data", help="the event's data (any UTF-8 text)")
    pub.add_argument("--topic", required=True, help="topic to publish on")
    pub.add_argument("--event", help="event type (default: message)")
    pub.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    pub.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (env {TOKEN_ENV})"
    )
    lis = commands.add_parser("listen", help="print events as they arrive, reconnecting")
    lis.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    lis.add_argument("--topic", action="append", help="topic to follow; repeat for several")
    lis.add_argument("--json", action="store_true", help="one JSON object per event")
    return parser


async def publish(url: str, topic: str, data: str, event: str | None, token: str | None) -> int:
    body = {"topic": topic, "data": data} | ({"event": event} if event else {})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(_endpoint(url, "/publish"), json=body, headers=headers) as resp:
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, json.JSONDecodeError) as error:
            print(f"broadcaster publish: {error}", file=sys.stderr)
            return 1
    if resp.status != 200:
        print(f"broadcaster publish: {resp.status}: {answer.get('error')}", file=sys.stderr)
        return 1
    print(answer["id"])
    return 0


async def listen(url: str, topics: list[str] | None, *, as_json: bool) -> int:
    """Follow the stream forever; on every drop, reconnect with Last-Event-ID."""
    target = _endpoint(url, "/events").with_query([("topic", t) for t in topics or []])
    parser = SSEParser()
    backoff = 0.0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            headers = {"Last-Event-ID": parser.last_id} if parser.last_id else {}
            try:
                async with session.get(target, headers=headers) as resp:
                    if resp.status == 200:
                        backoff = 0.0
                        async for chunk in resp.content.iter_any():
                            for event in parser.feed(chunk):
                                _print(event, as_json)
                    else:
                        _note(f"server answered {resp.status}")
            except aiohttp.ClientError as error:
                _note(f"connection failed: {error}")
            backoff = min(MAX_BACKOFF_SECONDS, max(backoff * 2, (parser.retry or 1000) / 1000))
            _note(f"reconnecting in {backoff:g}s")
            await asyncio.sleep(backoff)
            parser = _fresh_parser(parser)


def _fresh_parser(old: SSEParser) -> SSEParser:
    # A half-received event must not leak into the next connection's stream.
    parser = SSEParser()
    parser.last_id, parser.retry = old.last_id, old.retry
    return parser


def _print(event: ServerEvent, as_json: bool) -> None:
    if as_json:
        line = json.dumps(
            {"id": event.id, "event": event.event, "data": event.data}, ensure_ascii=False
        )
    else:
        line = f"[{event.id}] {event.event}: {event.data}"
    print(line, flush=True)


def _note(text: str) -> None:
    print(f"broadcaster listen: {text}", file=sys.stderr, flush=True)


def _endpoint(base: str, path: str) -> URL:
    url = URL(base)
    return url.with_path(path) if url.path in ("", "/") else url
