"""Event ids, events, and the frames that carry them to subscribers.

Id format: `<epoch>-<seq>`, two decimal integers. The in-memory backend uses its
boot time in milliseconds as the epoch and counts `seq` up from 1, so ids from an
earlier run are never reused and are recognisably foreign; Redis stream ids have
the same shape (`<ms>-<seq>`). Ids compare as the integer pair, which orders them
across all topics.
"""

from __future__ import annotations

import json
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
class Mercure:
    """What an update published through the Mercure endpoint adds to an event."""

    topics: tuple[str, ...]
    """The canonical topic, then the alternates."""
    private: bool = False
    custom_id: str | None = None
    """The publisher's own id: the one on the wire, and looked up on replay."""
    retry: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"topics": self.topics, "private": self.private, "id": self.custom_id,
             "retry": self.retry},
            separators=(",", ":"),
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Mercure:
        """Raises `ValueError` when `text` is not what `to_json` writes."""
        value = json.loads(text)
        topics, custom_id, retry = value["topics"], value["id"], value["retry"]
        if not (isinstance(topics, list) and topics and all(isinstance(t, str) for t in topics)):
            raise ValueError("topics")
        if not (custom_id is None or isinstance(custom_id, str)):
            raise ValueError("id")
        if not (retry is None or isinstance(retry, int)):
            raise ValueError("retry")
        return cls(tuple(topics), bool(value["private"]), custom_id, retry)


@dataclass(frozen=True, slots=True)
class Event:
    """A published event: its topic, id, data (text) and type (None for the
    default, `message`), and its `frame`, the wire bytes every subscriber gets,
    encoded once when the event is made."""

    topic: str
    """The topic native streams follow it by (a Mercure update's canonical topic,
    or `PRIVATE_ROUTE` when no native stream may read it)."""
    id: EventId
    data: str
    type: str | None = None
    mercure: Mercure | None = None
    frame: Frame = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        extra = self.mercure
        wire = sse.encode(
            self.data,
            id=str(self.id) if extra is None or extra.custom_id is None else extra.custom_id,
            event=self.type,
            retry=None if extra is None else extra.retry,
        )
        object.__setattr__(self, "frame", Frame.of(wire, self.id))

    @property
    def wire_id(self) -> str:
        """The id subscribers see: the publisher's own, else ours."""
        custom = None if self.mercure is None else self.mercure.custom_id
        return str(self.id) if custom is None else custom


PRIVATE_ROUTE = "(private)"
"""The native topic of a private Mercure update no native stream is checked for:
parentheses are not allowed in topic names, so no native stream follows it."""
