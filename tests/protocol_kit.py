"""Driving the front door's `StreamProtocol` in-process, with a transport stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from broadcaster.app import create_app
from broadcaster.edge.front_door import FrontDoor, StreamProtocol
from broadcaster.fanout.broker import HIGH_WATER
from broadcaster.ops.config import Settings
from broadcaster.web.keys import BROKER
from tests.conftest import dechunk


class RecordingTransport:
    """What a stream writes, with a write buffer the test fills and empties.

    `full` and `paused` are separate because a real transport pauses its
    protocol only once its buffer is over the high-water mark, and the broker
    stops writing direct at that mark: both orders must work.
    """

    def __init__(self) -> None:
        self.wire = bytearray()
        self.protocol: Any = None
        self.full = self.paused = self.closed = self.aborted = False
        self.handed_to: Any = None

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.wire += data

    def get_write_buffer_size(self) -> int:
        return HIGH_WATER if self.full else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert high == HIGH_WATER

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True
        self._lost()

    def abort(self) -> None:
        self.aborted = True
        self._lost()

    def _lost(self) -> None:
        # As a real transport does: the protocol hears of it on a later iteration.
        if self.protocol is not None and self.handed_to is None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_protocol(self, protocol: Any) -> None:
        self.handed_to = protocol

    def set_buffer(self, full: bool, pause: bool) -> None:
        self.full = full
        if pause and not self.paused:
            self.paused = True
            self.protocol.pause_writing()
        elif not full and self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def body(self) -> tuple[bytes, bool]:
        head, _, body = bytes(self.wire).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        return dechunk(body)


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


def connect(front: FrontDoor, request: bytes) -> tuple[StreamProtocol, RecordingTransport]:
    transport = RecordingTransport()
    protocol = front()
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request)
    return protocol, transport


def get(query: str = "topic=t", extra: str = "") -> bytes:
    return f"GET /events?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    """Let the loop run until `condition()` holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0)
