"""One stand-in for a socket's transport, as the broker and the front door see it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from broadcaster.fanout.broker import HIGH_WATER

_CHUNK = re.compile(rb"([0-9a-f]+)\r\n")


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """A chunked body's payload, and whether its last chunk came."""
    payload, pos = bytearray(), 0
    while pos < len(body):
        match = _CHUNK.match(body, pos)
        assert match is not None, body[pos : pos + 40]
        size = int(match[1], 16)
        if size == 0:
            return bytes(payload), True
        payload += body[match.end() : match.end() + size]
        assert body[match.end() + size : match.end() + size + 2] == b"\r\n"
        pos = match.end() + size + 2
    return bytes(payload), False


def chunk(data: bytes) -> bytes:
    """`data` as one HTTP/1.1 chunk, as aiohttp's chunked writer frames it."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class FakeTransport:
    """What was written, with a write buffer the test fills and empties.

    `full` and `paused` are separate because a real transport pauses its
    protocol only once its buffer is over the high-water mark, and the broker
    stops writing direct at that mark: both orders must work. Tests await
    `changed(...)` rather than counting loop turns.
    """

    def __init__(self) -> None:
        self.wire = bytearray()
        self.writes = 0
        self.protocol: Any = None
        self.full = self.paused = self.closed = self.aborted = False
        self.handed_to: Any = None
        self.drained = asyncio.Event()
        self.drained.set()
        self._change = asyncio.Event()

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.wire += data
        self.writes += 1
        self._changed()

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
        self._changed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_protocol(self, protocol: Any) -> None:
        self.handed_to = protocol
        self._changed()

    def set_buffer(self, full: bool, pause: bool = False) -> None:
        """Fill or empty the write buffer; `pause` also pauses the protocol."""
        self.full = full
        if full:
            self.drained.clear()
        else:
            self.drained.set()
        if pause and not self.paused:
            self.paused = True
            self.protocol.pause_writing()
        elif not full and self.paused:
            self.paused = False
            self.protocol.resume_writing()

    async def changed(self, condition: Callable[[], object], timeout: float = 2.0) -> None:
        """Wait until `condition()` holds, checking it after each write, close or hand-over."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._change.wait()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    def payload(self) -> tuple[bytes, bool]:
        """The chunked body written so far (no response head), and whether it ended."""
        return dechunk(bytes(self.wire))

    def body(self) -> tuple[bytes, bool]:
        """The same, after a `200 OK` head."""
        head, _, body = bytes(self.wire).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        return dechunk(body)
