"""HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1), for bytes framed once.

Every stream either door serves is chunked, and while a client keeps up the
broker writes an event's bytes straight to its socket, past aiohttp's writer.
So an event is framed as a chunk once, before the fan-out, and the very same
bytes object goes to every socket: framing per subscriber would cost a format
and a copy per delivery. That is why `Frame` (a value) carries a chunk, and why
the framing lives down here, below the broker, rather than with the doors.
"""

from __future__ import annotations

LAST_CHUNK = b"0\r\n\r\n"
"""The zero-length chunk that ends a chunked body."""


def chunk(payload: bytes) -> bytes:
    """`payload` as one chunk: its length in hex, CR LF, the bytes, CR LF."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def payload_of(chunk: bytes) -> memoryview:
    """The bytes one chunk carries, as a view: nothing is copied."""
    return memoryview(chunk)[chunk.index(b"\n") + 1 : -2]
