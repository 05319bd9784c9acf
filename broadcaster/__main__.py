"""Command line: `broadcaster [options]` serves; `publish` and `listen` are clients,
`token` mints a development token."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from broadcaster.app import create_app
from broadcaster.cli import commands
from broadcaster.edge import server
from broadcaster.jobs import data_dir
from broadcaster.ops import gc_tuning, logs
from broadcaster.ops.config import Settings, SettingsError, add_arguments, from_namespace
from broadcaster.web.access_log import AccessLogger

log = logging.getLogger("broadcaster")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # The server takes options only, so a first bare word can only be a command.
    if args and not args[0].startswith("-"):
        if args[0] not in commands.COMMANDS:
            _server_parser().error(_unknown_command(args[0]))
        sys.exit(commands.main(args))
    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    serve(settings)


def _unknown_command(word: str) -> str:
    close = difflib.get_close_matches(word, commands.COMMANDS, n=1)
    if close:
        return f"unknown command {word!r}; did you mean {close[0]!r}?"
    *others, last = commands.COMMANDS
    return f"unknown command {word!r}; the commands are {', '.join(others)} and {last}"


def _server_parser() -> argparse.ArgumentParser:
    usage = "\n       ".join(["%(prog)s [options]", *commands.usage_lines()])
    parser = argparse.ArgumentParser(
        prog="broadcaster",
        usage=usage,
        description="Serve Server-Sent Events to browsers: a fan-out pub/sub server.",
        epilog="Clients: 'broadcaster publish --help', 'broadcaster listen --help'; "
        "'broadcaster token --help' mints a development token.",
    )
    add_arguments(parser)
    return parser


def _settings(args: list[str]) -> Settings:
    parser = _server_parser()
    try:
        return from_namespace(parser.parse_args(args), os.environ)
    except SettingsError as error:
        parser.error(str(error))


def serve(settings: Settings) -> None:
    data_dir.require(settings.data_dir)
    if settings.publish_token is None:
        log.warning("No publish token set: only loopback clients may publish")
    app = create_app(settings)
    app.on_startup.append(_tune_gc)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(
            server.serve(
                app,
                settings,
                # Off by default in aiohttp: a client leaving an idle stream would
                # stay subscribed until the next write. On, its handler is
                # cancelled at once.
                handler_cancellation=True,
                # SO_KEEPALIVE probes start after the kernel's 2 h default;
                # heartbeats find dead peers far sooner, and the setsockopt is 5%
                # of the cost of a connect.
                tcp_keepalive=False,
                # aiohttp closes a connection that has not sent a complete request
                # by this deadline: what bounds slowloris clients and half-open
                # connections.
                keepalive_timeout=settings.idle_timeout,
                access_log_class=AccessLogger,
                # Streams log their end to the same logger, in the same format.
                access_log=logging.getLogger("broadcaster.access"),
            )
        )


async def _tune_gc(app: web.Application) -> None:
    gc_tuning.tune()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # no uvloop wheel for this platform
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main()
