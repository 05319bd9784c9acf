"""Event ids, events, and the frames that carry them to subscribers.

Id format: `<epoch>-<seq>`, two decimal integers. The in-memory backend uses its
boot time in milliseconds as the epoch and counts `seq` up from 1, so ids from an
earlier run are never reused and are recognisably foreign; Redis stream ids have
the same shape (`<ms>-<seq>`). Ids compare as the integer pair, which orders them
across all topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from broadcaster.wire import chunked, sse

_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
MAX_PART = 2**64 - 1


class EventId(NamedTuple):
    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        """Raise `ValueError` naming the problem when `text` is not an id."""
        match = _ID.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"malformed event id {text[:64]!r}: expected <epoch>-<seq>")
        epoch, seq = int(match[1]), int(match[2])
        if epoch > MAX_PART or seq > MAX_PART:  # past what Redis stream ids hold
            raise ValueError(f"malformed event id {text[:64]!r}: a part exceeds 2**64 - 1")
        return cls(epoch, seq)


@dataclass(frozen=True, slots=True)
class Frame:
    """One or more events' SSE bytes bound for subscribers, with the id they
    carry, if any.

    The bytes are stored once, already framed as one HTTP/1.1 chunk (`chunk`),
    so the fan-out can hand the very same object to every subscriber's socket;
    `wire/chunked.py` says why the chunk is made here and not by the doors.
    `payload` is the SSE bytes alone, for a writer that frames them itself.
    """

    chunk: bytes
    id: EventId | None = None
    parts: tuple[Frame, ...] = ()
    """For a frame joined from several events: those events' frames."""

    @classmethod
    def of(cls, payload: bytes, id: EventId | None = None) -> Frame:
        return cls(chunked.chunk(payload), id)

    @classmethod
    def joined(cls, frames: list[Frame]) -> Frame:
        """Several frames as one chunk, carrying the last one's id."""
        payload = b"".join(frame.payload for frame in frames)
        return cls(chunked.chunk(payload), frames[-1].id, tuple(frames))

    @property
    def payload(self) -> memoryview:
        """The SSE bytes without the chunk framing, as a view: nothing is copied."""
        return chunked.payload_of(self.chunk)


@dataclass(frozen=True, slots=True)
class Event:
    """A published event: its topic, id, data (text) and type (None for the
    default, `message`), and its `frame`, the wire bytes every subscriber gets,
    encoded once when the event is made."""

    topic: str
    id: EventId
    data: str
    type: str | None = None
    frame: Frame = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        wire = sse.encode(self.data, id=str(self.id), event=self.type)
        object.__setattr__(self, "frame", Frame.of(wire, self.id))
