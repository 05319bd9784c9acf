"""The protocol the front door hands connections to is aiohttp's, configured as
aiohttp would configure it, only answering its refusals as JSON.

`FrontDoorSite` builds it from `web.Server._kwargs`, a private attribute: these
tests fail on the aiohttp upgrade that moves or changes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from broadcaster.app import create_app
from broadcaster.edge.connection import MAX_FIELD_SIZE, MAX_LINE_SIZE, Connection
from broadcaster.edge.server import BACKLOG, FrontDoorSite
from broadcaster.ops.config import Settings
from broadcaster.web.access_log import AccessLogger

QUIET = Settings(tick_interval=3600, heartbeat_interval=3600)


async def test_the_handed_over_protocol_has_the_runners_settings() -> None:
    app = create_app(replace(QUIET, idle_timeout=7.5))
    runner = web.AppRunner(
        app, keepalive_timeout=7.5, tcp_keepalive=False, access_log_class=AccessLogger
    )
    await runner.setup()
    try:
        site = FrontDoorSite(runner, "127.0.0.1", 0, BACKLOG)
        assert runner.server is not None
        ours, aiohttps = site.door.hand_off_to(), runner.server()
        assert isinstance(ours, Connection)
        assert isinstance(aiohttps, web.RequestHandler)
        assert ours.keepalive_timeout == aiohttps.keepalive_timeout == 7.5
        assert type(ours.access_logger) is type(aiohttps.access_logger) is AccessLogger
        assert (ours.max_line_size, ours.max_field_size) == (MAX_LINE_SIZE, MAX_FIELD_SIZE)
    finally:
        await runner.cleanup()


async def test_cleanup_stops_listening_first() -> None:
    runner = web.AppRunner(create_app(QUIET))
    await runner.setup()
    port = unused_port()
    site = FrontDoorSite(runner, "127.0.0.1", port, BACKLOG)
    await site.start()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await runner.cleanup()
    await site.door.wait_closed(1.0)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
