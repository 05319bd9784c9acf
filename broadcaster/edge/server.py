"""Serving the app: aiohttp's runner, with the front door on the listening socket.

This replaces `web.run_app`, which only knows aiohttp's own protocol factory.
What run_app did and still matters is done here too: the runner's settings,
SIGTERM and SIGINT as a graceful stop, and the "Running on" line.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from yarl import URL

from broadcaster.edge import pace
from broadcaster.edge.connection import Connection
from broadcaster.edge.front_door import FrontDoor
from broadcaster.ops.config import Settings
from broadcaster.web.keys import ARRIVED

log = logging.getLogger("broadcaster")

BACKLOG = 4096  # the default of 128 makes 10,000 connects take ~18 s instead of ~1 s

RequestFactory = Callable[
    [RawRequestMessage, StreamReader, RequestHandler, AbstractStreamWriter, "asyncio.Task[None]"],
    web.BaseRequest,
]


class FrontDoorSite(web.BaseSite):
    """A TCP site whose connections meet the front door before aiohttp.

    The door hands aiohttp a `Connection`, aiohttp's own protocol with JSON
    refusals. Each request aiohttp builds tells the door its request head is in, and
    has its body paced.
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int, backlog: int) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._listen_backlog = host, port, backlog
        self._listener: asyncio.Server | None = None
        server = runner.server
        assert server is not None, "the runner is set up first"
        self._aiohttp = server
        self.door = FrontDoor(runner.app, self._aiohttp_protocol)
        server.request_factory = self._watched(server.request_factory)

    def _aiohttp_protocol(self) -> asyncio.Protocol:
        server = self._aiohttp
        # `Server.__call__` builds a plain RequestHandler from these same options;
        # tests/test_connection.py fails if aiohttp stops keeping them here.
        return Connection(server, loop=asyncio.get_running_loop(), **server._kwargs)

    def _watched(self, factory: RequestFactory) -> RequestFactory:
        door, settings = self.door, self.door.settings

        def make(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            door.request_head_received(protocol)
            request = factory(message, payload, protocol, writer, task)
            arrived = protocol.take_arrival() if isinstance(protocol, Connection) else None
            if arrived is not None:
                request[ARRIVED] = arrived
            pace.watch(request, settings.idle_timeout, settings.min_body_rate)
            return request

        return make

    @property
    def name(self) -> str:
        """The address it listens on: with port 0, the port the system picked."""
        port = self._port
        if self._listener is not None and self._listener.sockets:
            port = self._listener.sockets[0].getsockname()[1]
        return str(URL.build(scheme="http", host=self._host, port=port))

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self.door, self._host, self._port, backlog=self._listen_backlog, reuse_address=True
        )

    async def stop(self) -> None:
        """The runner's first step of cleanup: stop taking connections."""
        if self._listener is not None:
            self._listener.close()
        await super().stop()


async def serve(app: web.Application, settings: Settings, **runner_options: Any) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout, **runner_options)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    site = FrontDoorSite(runner, settings.host, settings.port, BACKLOG)
    try:
        try:
            await site.start()
        except OSError as error:
            # A port in use or a host that is not ours: say so, not a traceback.
            raise SystemExit(
                f"broadcaster: cannot listen on {site.name}: {error.strerror}"
            ) from None
        log.info("Running on %s", site.name)
        await stop.wait()
    finally:
        await runner.cleanup()
        await site.door.wait_closed(settings.shutdown_timeout)
