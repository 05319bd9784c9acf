"""Driving the front door's `StreamProtocol` in-process, on a `FakeTransport`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from broadcaster.app import create_app
from broadcaster.edge.front_door import FrontDoor, StreamProtocol
from broadcaster.ops.config import Settings
from broadcaster.web.keys import BROKER
from tests.support.transport import FakeTransport


class Handoff(asyncio.Protocol):
    """Stands in for aiohttp's protocol, recording what it was given."""

    def __init__(self) -> None:
        self.received = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data


@asynccontextmanager
async def door(**settings: Any) -> AsyncIterator[FrontDoor]:
    app = create_app(Settings(tick_interval=3600, heartbeat_interval=3600, **settings))
    await app[BROKER].start()
    yield FrontDoor(app, Handoff)


def accept(front: FrontDoor) -> tuple[StreamProtocol, FakeTransport]:
    """A fresh connection that has sent nothing yet."""
    transport = FakeTransport()
    protocol = front()
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


def connect(front: FrontDoor, request: bytes) -> tuple[StreamProtocol, FakeTransport]:
    protocol, transport = accept(front)
    protocol.data_received(request)
    return protocol, transport


def get(query: str = "topic=t", extra: str = "") -> bytes:
    return f"GET /events?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
