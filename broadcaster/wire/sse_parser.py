"""An incremental SSE parser for clients (the `listen` command and the tests),
following the WHATWG "event stream interpretation" steps."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerEvent:
    data: str
    event: str = "message"
    id: str = ""
    # `id` is the spec's lastEventId, which persists from earlier events; this
    # says whether the event's own block had an id: field. It stays out of ==,
    # which compares what an EventSource would see.
    id_given: bool = field(default=False, compare=False)


class SSEParser:
    """Feed it bytes as they arrive; it yields each event once it is complete."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id_given = False
        self.last_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> Iterator[ServerEvent]:
        self._buffer += self._decoder.decode(chunk)
        while (match := _LINE_END.search(self._buffer)) is not None:
            # A CR at the very end may be the first half of a CR LF still in flight.
            if match.group() == "\r" and match.end() == len(self._buffer):
                break
            line, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: str) -> ServerEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self.last_id = value
            self._id_given = True
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerEvent | None:
        data, event, id_given = self._data, self._event, self._id_given
        self._data, self._event, self._id_given = [], "", False
        if not data:
            return None
        return ServerEvent("\n".join(data), event or "message", self.last_id, id_given)
