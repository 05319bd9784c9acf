"""Import a CSV or XLSX file into a new SQLite table: every row, or nothing.

Synchronous and self-contained: it runs in a worker thread, never on the event
loop. Rows are inserted in batches inside one transaction, and the table is
created inside that same transaction, so a failure at any row leaves no table
behind (SQLite's DDL is transactional).

Rules, each failure naming the row where one applies (the header is row 1):
- the file is CSV (UTF-8, comma-separated, optional BOM) or XLSX (first sheet);
- the first row is the header: every column has a name, and no name repeats;
- every other row has as many fields as the header (blank rows are skipped).
All values are stored as TEXT; empty XLSX cells as NULL.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import operator
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

BATCH_ROWS = 1_000  # csv.reader rows taken at once (in C, holding the GIL)
BLOCK_BYTES = 1 << 16  # CSV read at a time: its split holds the GIL, ~1 ms
MAX_COLUMNS = 2_000  # SQLite's default SQLITE_MAX_COLUMN
ZIP_MAGIC = b"PK\x03\x04"
CANCELLED = "cancelled: the server is shutting down"
MEMORY_BUDGET = 2 * 1024**3
"""Bytes of memory the XLSX reader's process may use by default (--xlsx-memory-mib)."""

Cell = str | None
Row = list[Cell]


class ImportFailed(Exception):
    """Why an import stopped, and at which row when that applies."""

    def __init__(self, reason: str, row: int | None = None) -> None:
        super().__init__(f"row {row}: {reason}" if row is not None else reason)
        self.reason = reason
        self.row = row


@dataclass(frozen=True, slots=True)
class Progress:
    rows_done: int
    total: int | None
    fraction: float
    """0..1: rows against the total when it is known, else bytes read."""


@dataclass(frozen=True, slots=True)
class Imported:
    table: str
    rows: int
    columns: list[str]


def sniff(path: Path, filename: str) -> str:
    """The kind of the upload at `path`, sent as `filename`, or ImportFailed."""
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except OSError as error:
        raise ImportFailed(f"the upload could not be read ({_reason(error)})") from None
    return detect_kind(filename, head)


def detect_kind(filename: str, head: bytes) -> str:
    """'csv' or 'xlsx', from the name and the first bytes, or ImportFailed."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".xlsx":
        return "xlsx"
    if suffix in (".csv", ".txt") and not head.startswith(ZIP_MAGIC) and b"\x00" not in head:
        return "csv"
    raise ImportFailed(f"{filename!r} is not a CSV or XLSX file")


class Rows(Protocol):
    """A file's rows, in batches, and how far through the file we are."""

    total: int | None
    short_rows_padded: bool
    """Spreadsheets drop trailing empty cells: a short row is padded, not ragged."""

    def batches(self) -> Iterator[list[Row]]:
        """Every row in order, in lists: row numbers count on across batches."""
        ...

    def fraction(self, rows_done: int) -> float: ...
    def close(self) -> None: ...


class CsvRows:
    total: int | None = None
    short_rows_padded = False

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO = path.open("rb")
        self._size = max(1, os.fstat(self._file.fileno()).st_size)
        self._text: io.TextIOWrapper | None = None  # the rest of the file, for csv.reader

    def batches(self) -> Iterator[list[Row]]:
        try:
            yield from self._blocks()
        except UnicodeDecodeError:
            # The block decoder cannot say which row a bad byte is in: read the
            # file again line by line, which stops with the reason and the row.
            with self._path.open("rb") as again:
                for _ in _records(_lines(again)):
                    pass
            raise ImportFailed("not UTF-8 text") from None

    def _blocks(self) -> Iterator[list[Row]]:
        # csv.reader's Python objects cost as much as SQLite's inserts. Most
        # files quote nothing: their rows are their lines split at commas, done
        # in C twice as fast. From the first block that quotes, csv.reader reads
        # the rest (a quoted field may span lines, and blocks). Blocks end at a
        # line's end, so that no character is cut, and are decoded in one go.
        number = 0
        while raw := self._file.read(BLOCK_BYTES):
            raw += self._file.readline()
            block = raw.decode("utf-8")
            if not number:
                block = block.removeprefix("\ufeff")
            rows = _unquoted_rows(block)
            if rows is None:
                self._text = io.TextIOWrapper(self._file, encoding="utf-8", newline="")
                lines = itertools.chain(io.StringIO(block, newline=""), self._text)
                yield from _batches(cast(Iterator[Row], csv.reader(lines, strict=True)), number)
                return
            number += len(rows)
            yield rows

    def fraction(self, rows_done: int) -> float:
        return min(1.0, self._file.tell() / self._size)

    def close(self) -> None:
        (self._text or self._file).close()


_COMMAS = operator.methodcaller("split", ",")


def _unquoted_rows(block: str) -> list[Row] | None:
    """The rows csv.reader would read from `block` (whole lines), if it has no
    quote, no line ending in a lone CR, and no line past csv's field size limit
    (whose error csv.reader then gives); else None."""
    if '"' in block:
        return None
    if "\r" in block:
        lines = block.split("\r\n")
        if not block.count("\r") == block.count("\n") == len(lines) - 1:
            return None  # a lone CR or LF among CRLFs
    else:
        lines = block.split("\n")
    if not lines[-1]:
        lines.pop()  # the last line's end, not an empty line
    if max(map(len, lines), default=0) > csv.field_size_limit():
        return None
    # An empty line gives [""] where csv.reader gives []: both are blank rows.
    return list(map(_COMMAS, lines))


def _batches(reader: Iterator[Row], number: int) -> Iterator[list[Row]]:
    """`reader`'s rows, BATCH_ROWS at a time, taken in C (islice into extend);
    `number` rows came before them."""
    while True:
        batch: list[Row] = []
        failure = None
        try:
            batch.extend(itertools.islice(reader, BATCH_ROWS))
        except csv.Error as error:
            # extend keeps the rows before the bad one: an earlier row's
            # problem is still the one reported.
            failure = ImportFailed(f"malformed CSV: {error}", number + len(batch) + 1)
        if batch:
            yield batch
        if failure:
            raise failure
        if not batch:
            return
        number += len(batch)


def _records(lines: Iterable[str]) -> Iterator[tuple[int, Row]]:
    number = 0
    try:
        reader = cast(Iterator[Row], csv.reader(lines, strict=True))
        for number, fields in enumerate(reader, 1):
            yield number, fields
    except csv.Error as error:
        raise ImportFailed(f"malformed CSV: {error}", number + 1) from None
    except _BadLine as bad:
        raise ImportFailed(f"not UTF-8 text ({bad})", number + 1) from None


class _BadLine(Exception):
    pass


def _lines(file: BinaryIO) -> Iterator[str]:
    for number, raw in enumerate(file, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _BadLine(f"byte {error.start + 1} of line {number}") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def open_rows(
    path: Path, kind: str, while_loading: Callable[[], None], xlsx_budget: int = MEMORY_BUDGET
) -> Rows:
    if kind == "xlsx":
        from broadcaster.jobs.xlsx import XlsxRows  # imported here: xlsx imports this module

        return XlsxRows(path, while_loading, xlsx_budget)
    return CsvRows(path)


def check_header(row: Row) -> list[str]:
    names = [(cell or "").strip() for cell in row]
    if not any(names):
        raise ImportFailed("no header row: the first row must name the columns", 1)
    if len(names) > MAX_COLUMNS:
        raise ImportFailed(f"{len(names)} columns; at most {MAX_COLUMNS}", 1)
    for index, name in enumerate(names, 1):
        if not name:
            raise ImportFailed(f"no header row: column {index} has no name", 1)
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:  # SQLite column names ignore case
            raise ImportFailed(f"column name {name!r} appears twice in the header", 1)
        seen.add(name.lower())
    return names


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def import_file(
    path: Path,
    kind: str,
    database: Path,
    table: str,
    on_progress: Callable[[Progress], None],
    cancelled: threading.Event,
    xlsx_budget: int = MEMORY_BUDGET,
) -> Imported:
    """Import `path` into a new `table`; raises ImportFailed, leaving nothing.
    `xlsx_budget`: the bytes of memory the XLSX reader's process may use."""

    def while_loading() -> None:
        if cancelled.is_set():
            raise ImportFailed(CANCELLED)
        on_progress(Progress(0, None, 0.0))

    try:
        rows = open_rows(path, kind, while_loading, xlsx_budget)
    except OSError as error:
        raise ImportFailed(f"the upload could not be read ({_reason(error)})") from None
    try:
        connection = sqlite3.connect(database, isolation_level=None, timeout=30)
        try:
            return _transaction(connection, rows, table, on_progress, cancelled)
        finally:
            connection.close()
    except sqlite3.Error as error:
        # A full disk, a vanished or read-only data directory: SQLite's words.
        raise ImportFailed(f"the database could not be written ({error})") from None
    except OSError as error:
        raise ImportFailed(f"the upload could not be read ({_reason(error)})") from None
    finally:
        rows.close()


def _transaction(
    connection: sqlite3.Connection,
    rows: Rows,
    table: str,
    on_progress: Callable[[Progress], None],
    cancelled: threading.Event,
) -> Imported:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        imported = _copy(rows, connection, table, on_progress, cancelled)
    except BaseException:
        # SQLite may have rolled back already (it does on SQLITE_FULL).
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return imported


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _copy(
    rows: Rows,
    connection: sqlite3.Connection,
    table: str,
    on_progress: Callable[[Progress], None],
    cancelled: threading.Event,
) -> Imported:
    batches = (batch for batch in rows.batches() if batch)
    first = next(batches, None)
    if first is None:
        raise ImportFailed("the file is empty")
    columns = check_header(first[0])
    width = len(columns)
    connection.execute(f"CREATE TABLE {quote(table)} ({', '.join(quote(c) for c in columns)})")
    insert = f"INSERT INTO {quote(table)} VALUES ({', '.join('?' * width)})"
    done = 0
    read = 1  # rows read so far, the header included
    for batch in itertools.chain([first[1:]], batches):
        if done:  # the batches before this one; the last is reported as the end
            on_progress(Progress(done, rows.total, rows.fraction(done)))
        valid = _valid(batch, read, width, rows.short_rows_padded)
        read += len(batch)
        if cancelled.is_set():
            raise ImportFailed(CANCELLED)
        connection.executemany(insert, valid)
        done += len(valid)
    on_progress(Progress(done, rows.total, 1.0))
    return Imported(table, done, columns)


def _valid(batch: list[Row], before: int, width: int, short_rows_padded: bool) -> list[Row]:
    """The batch's rows to insert: blank ones skipped, short ones padded where
    allowed, or ImportFailed naming the first bad row (`before` rows came earlier)."""
    # Nearly every batch is all full, non-blank rows: tested in C, stored as it is.
    if set(map(len, batch)) == {width} and all(map(any, batch)):
        return batch
    valid = []
    for number, row in enumerate(batch, before + 1):
        if not any(row):  # blank: every cell None or ""
            continue
        if len(row) != width:
            if len(row) > width or not short_rows_padded:
                raise ImportFailed(f"{len(row)} fields, but the header has {width}", number)
            row += [None] * (width - len(row))
        valid.append(row)
    return valid
