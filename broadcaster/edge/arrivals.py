"""By when each request on one connection had come, from what was read when
and what the kernel still held unread.

aiohttp parses at most 32 pipelined requests ahead of the one it handles and
leaves the rest unread in the kernel, or unparsed in its own buffer, so a
request may be parsed long after its bytes came. The publish throttle bounds a
request's wait from when it came: dated by its parse, a publisher pipelining
faster than the fan-out would never be refused.

Each request is sized as it was written and dated by when its last byte was
known to be there. Errors lean late on purpose: a request dated late looks as
if it waited less (the throttle refuses a little later), one dated early would
be refused on a server with time to spare. So a size that cannot be told (a
chunked body) dates every request after it by the last read, until the
connection catches up; and whenever it has nothing queued, the reckoning
restarts from the last byte read, which also bounds what a size told wrong
(odd whitespace, blank lines between requests) can add up to.
"""

from __future__ import annotations

from collections import deque

MAX_NOTES = 64


class Arrivals:
    __slots__ = ("_lost", "_parsed", "_present", "_read")

    def __init__(self) -> None:
        self._read = 0
        self._parsed = 0
        """Where the requests dated so far end in the stream, as sized."""
        self._lost = False
        """A size could not be told: `_parsed` is unknown until caught up."""
        self._present: deque[tuple[int, float]] = deque()
        """(offset, time): the stream's bytes up to offset had all come by then."""

    @property
    def notes(self) -> int:
        """How many (offset, time) notes it keeps: one, once caught up."""
        return len(self._present)

    def read(self, size: int, unread: int, now: float) -> None:
        """`size` more bytes were read at `now`, and the kernel holds `unread` more."""
        self._read += size
        self.saw(unread, now)

    def saw(self, unread: int, now: float) -> bool:
        """The kernel holds `unread` bytes not yet read: they came by `now`.
        Whether that is more than was known."""
        offset = self._read + unread
        if self._present and offset <= self._present[-1][0]:
            return False
        if len(self._present) >= MAX_NOTES:
            # A client trickling a byte per read while a request is handled
            # would grow the notes without end: later bytes are dated later,
            # which errs the safe way.
            self._present.pop()
        self._present.append((offset, now))
        return True

    def caught_up(self) -> None:
        """Every whole request read so far has been dated and handed on: what
        aiohttp still holds unparsed is the start of one not yet whole."""
        # A body still coming belongs to a request already dated: never move
        # back from its end, or the next request would be dated from too early.
        self._parsed = self._read if self._lost else max(self._parsed, self._read)
        self._lost = False
        self._forget_before(self._read)

    def date(self, size: int | None, now: float) -> float:
        """By when the next request in the stream, `size` bytes long as written
        (None: not known), had all come."""
        if size is None or self._lost:
            self._lost = True
            return self._present[-1][1] if self._present else now
        self._parsed += size
        self._forget_before(self._parsed)  # past the last read: the last note dates it
        return self._present[0][1] if self._present else now

    def _forget_before(self, offset: int) -> None:
        # The first note at or past `offset` dates it; earlier ones date only
        # bytes already dated. The last note is kept: it covers every byte read.
        while len(self._present) > 1 and self._present[0][0] < offset:
            self._present.popleft()
