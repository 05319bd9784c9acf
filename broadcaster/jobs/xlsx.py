"""Read the first sheet of an XLSX file with calamine (Rust), in a child process.

calamine loads 500,000 rows x 10 columns in about 6 s, where openpyxl took 100,
but it loads the whole sheet into one dense grid spanning its cells, and a failed
Rust allocation aborts the process: a 5 KB file with cells in A1 and XFD1048576
asks for 512 GiB. So the sheet is read in a child process (`python -m
broadcaster.jobs.xlsx FILE BYTES`) whose address space is capped at BYTES
(--xlsx-memory-mib); a sheet that does not fit fails its import, never the
server. The child turns cells into
text and streams rows back in marshal frames, which also keeps that per-cell
work off the server's interpreter (and its GIL).

Cells come out as the same text openpyxl's values gave before: dates as ISO
datetimes, integer-valued numbers without ".0", booleans as True/False, formulas
as their cached values, empty cells as None.
"""

from __future__ import annotations

import datetime
import marshal
import os
import resource
import select
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeGuard

from broadcaster.jobs.importer import MEMORY_BUDGET, Cell, ImportFailed, Row

FRAME_ROWS = 2_000
FRAME_HEAD = struct.Struct("<I")
WAIT_TICK = 0.25  # seconds between calls of while_loading


class XlsxRows:
    """The rows of an XLSX file's first sheet, read by a calamine child process."""

    short_rows_padded = True

    def __init__(
        self, path: Path, while_loading: Callable[[], None], budget: int = MEMORY_BUDGET
    ) -> None:
        self._budget = budget
        self._child = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.jobs.xlsx", str(path), str(budget)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert self._child.stdout is not None
        self._frames: IO[bytes] = self._child.stdout
        try:
            # calamine loads the whole sheet before the first frame: meanwhile,
            # say every WAIT_TICK that the import is alive (and let it be cancelled).
            # poll, not select: a server holding 1,000+ connections hands the
            # pipe a descriptor past select()'s limit of 1023.
            waiting = select.poll()
            waiting.register(self._frames, select.POLLIN)
            while not waiting.poll(WAIT_TICK * 1000):
                while_loading()
            first = self._next_frame(0)
        except BaseException:
            self.close()
            raise
        self.total: int | None = first[1]

    def batches(self) -> Iterator[list[Row]]:
        number = 0
        while (frame := self._next_frame(number))[0] == "rows":
            number += len(frame[1])
            yield frame[1]

    def _next_frame(self, number: int) -> tuple[Any, ...]:
        # Length-prefixed: marshal.load on a stream reads it object by object.
        head = self._frames.read(FRAME_HEAD.size)
        body = (
            self._frames.read(FRAME_HEAD.unpack(head)[0]) if len(head) == FRAME_HEAD.size else b""
        )
        try:
            frame: tuple[Any, ...] = marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            raise ImportFailed(self._why_child_stopped(), number + 1 if number else None) from None
        if frame[0] == "failed":
            raise ImportFailed(frame[1], frame[2])
        return frame

    def _why_child_stopped(self) -> str:
        status = self._child.wait()
        if status < 0 or status == MEMORY_EXIT:  # killed, or aborted on a failed allocation
            mib = self._budget // 1024**2
            return (
                f"the sheet does not fit in the XLSX reader's memory budget ({mib} MiB,"
                " --xlsx-memory-mib): it holds every cell from the sheet's first used cell"
                " to its last, empty ones too"
            )
        return f"the XLSX reader stopped (exit status {status})"

    def fraction(self, rows_done: int) -> float:
        return min(1.0, rows_done / self.total) if self.total else 0.0

    def close(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()
        self._frames.close()


MEMORY_EXIT = 3


def text(value: object) -> Cell:
    """A calamine cell value as the text openpyxl's value gave (calamine's empty is '')."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, datetime.datetime | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.date):  # openpyxl gives midnight datetimes, never dates
        return datetime.datetime.combine(value, datetime.time()).isoformat()
    return str(value)  # int (never in XLSX), timedelta: as str() gave them before


def trimmed(row: Row) -> Row:
    # Spreadsheets pad rows with empty cells up to the widest one.
    end = len(row)
    while end and row[end - 1] is None:
        end -= 1
    return row[:end]


def _all_text(values: list[Any]) -> TypeGuard[Row]:
    """Whether every cell is a non-empty string: the row is stored as it is.

    Most rows are all text, and two passes in C (join refuses anything but str)
    cost a third of calling text() on every cell."""
    if "" in values:
        return False
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def _rows(path: str) -> Iterator[Any]:
    """In the child: the frames, first ("total", rows after the header)."""
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        sheet = CalamineWorkbook.from_path(path).get_sheet_by_index(0)
    except (CalamineError, OSError, ValueError) as error:
        yield ("failed", f"not a valid XLSX file ({error})", None)
        return
    if sheet.start is None:
        yield ("total", None)
        yield ("end",)
        return
    # calamine's grid starts at the first used column; openpyxl's rows at column A.
    lead: Row = [None] * sheet.start[1]
    yield ("total", sheet.start[0] + sheet.height - 1)
    batch: list[Row] = []
    for values in sheet.iter_rows():
        row = values if _all_text(values) else [text(v) for v in values]
        if lead:
            row = lead + row
        batch.append(trimmed(row) if row and row[-1] is None else row)
        if len(batch) == FRAME_ROWS:
            yield ("rows", batch)
            batch = []
    yield ("rows", batch)
    yield ("end",)


def main(argv: list[str]) -> int:
    path, budget = argv[0], int(argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    # Background work: where the child shares a core with the server, the event
    # loop's wake-ups must win (without this, ticks ran 50-200 ms late, p99).
    os.nice(10)
    out = sys.stdout.buffer
    try:
        for frame in _rows(path):
            body = marshal.dumps(frame)
            out.write(FRAME_HEAD.pack(len(body)) + body)
        out.flush()
    except MemoryError:
        return MEMORY_EXIT
    except BrokenPipeError:  # the import was cancelled or failed: nobody is reading
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
