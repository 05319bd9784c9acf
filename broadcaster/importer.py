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
import datetime
import os
import re
import sqlite3
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

BATCH_ROWS = 5_000
MAX_COLUMNS = 2_000  # SQLite's default SQLITE_MAX_COLUMN
ZIP_MAGIC = b"PK\x03\x04"

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
    """A file's rows, numbered from 1, and how far through the file we are."""

    total: int | None
    short_rows_padded: bool
    """Spreadsheets drop trailing empty cells: a short row is padded, not ragged."""

    def __iter__(self) -> Iterator[tuple[int, Row]]: ...
    def fraction(self, rows_done: int) -> float: ...
    def close(self) -> None: ...


class CsvRows:
    total: int | None = None
    short_rows_padded = False

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("rb")
        self._size = max(1, os.fstat(self._file.fileno()).st_size)
        self._row = 0

    def _lines(self) -> Iterator[str]:
        # Decoded line by line, so that a bad byte is blamed on its own row.
        for number, raw in enumerate(self._file, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                reason = f"not UTF-8 text (byte {error.start + 1} of line {number})"
                raise ImportFailed(reason, self._row + 1) from None
            yield text.removeprefix("\ufeff") if number == 1 else text

    def __iter__(self) -> Iterator[tuple[int, Row]]:
        reader = csv.reader(self._lines(), strict=True)
        try:
            for fields in reader:
                self._row += 1
                yield self._row, list(fields)
        except csv.Error as error:
            raise ImportFailed(f"malformed CSV: {error}", self._row + 1) from None

    def fraction(self, rows_done: int) -> float:
        return min(1.0, self._file.tell() / self._size)

    def close(self) -> None:
        self._file.close()


class XlsxRows:
    total: int | None
    short_rows_padded = True

    def __init__(self, path: Path) -> None:
        import openpyxl  # imported here: only XLSX imports pay for it
        from openpyxl.utils.exceptions import InvalidFileException

        # A file object, not the path: openpyxl refuses paths that do not end in
        # .xlsx, and uploads are stored under names of their own.
        self._file: BinaryIO = path.open("rb")
        try:
            self._book = openpyxl.load_workbook(self._file, read_only=True, data_only=True)
            self._sheet = self._book.worksheets[0]
        except (zipfile.BadZipFile, InvalidFileException, KeyError, IndexError, OSError) as error:
            self._file.close()
            raise ImportFailed(f"not a valid XLSX file ({error})") from None
        max_row = self._sheet.max_row
        if not isinstance(max_row, int) or max_row <= 1:
            # No <dimension> (openpyxl's write-only mode and many exporters omit
            # it), or a bare "A1" that some write whatever the size: count.
            max_row = self._count_rows()
        self.total = max(0, max_row - 1)

    def _count_rows(self) -> int:
        """The sheet's <row> elements, from its XML as it inflates: no parsing,
        so a small fraction of what the import itself costs."""
        try:
            # openpyxl's own way to the sheet's XML inside the zip; a private
            # method, guarded by tests/test_importer.py's write-only file.
            with self._sheet._get_source() as source:  # type: ignore[attr-defined]
                return count_row_tags(iter(lambda: source.read(CHUNK_BYTES), b""))
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            self.close()
            raise ImportFailed(f"not a valid XLSX file ({error})") from None

    def __iter__(self) -> Iterator[tuple[int, Row]]:
        number = 0
        try:
            for values in self._sheet.iter_rows(values_only=True):
                number += 1
                yield number, _trimmed([_cell(value) for value in values])
        except ImportFailed:
            raise
        except Exception as error:  # openpyxl raises many types for a damaged sheet
            raise ImportFailed(f"damaged XLSX sheet ({error})", number + 1) from None

    def fraction(self, rows_done: int) -> float:
        return min(1.0, rows_done / self.total) if self.total else 0.0

    def close(self) -> None:
        self._book.close()
        self._file.close()


ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,31}:)?row[\s/>]")
"""A row's start tag, with or without a namespace prefix (not <rowBreaks>).
Text never matches: XML escapes its "<"."""
ROW_TAG_MAX = 64
CHUNK_BYTES = 1 << 20


def count_row_tags(chunks: Iterable[bytes]) -> int:
    """Row start tags in XML arriving in chunks, however the chunks split them."""
    count, carry = 0, b""
    for chunk in chunks:
        data = carry + chunk
        # Hold back a tag that may be cut off at the end: from the last "<",
        # when it is near enough to the end to be the start of an unfinished one.
        last = data.rfind(b"<", max(0, len(data) - ROW_TAG_MAX))
        keep = last if last >= 0 else len(data)
        count += sum(1 for _ in ROW_TAG.finditer(data, 0, keep))
        carry = data[keep:]
    return count + sum(1 for _ in ROW_TAG.finditer(carry))


def _cell(value: object) -> Cell:
    if value is None:
        return None
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _trimmed(row: Row) -> Row:
    # Spreadsheets pad rows with empty cells up to the widest one.
    end = len(row)
    while end and row[end - 1] in (None, ""):
        end -= 1
    return row[:end]


def open_rows(path: Path, kind: str) -> Rows:
    return XlsxRows(path) if kind == "xlsx" else CsvRows(path)


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
) -> Imported:
    """Import `path` into a new `table`; raises ImportFailed, leaving nothing."""
    try:
        rows = open_rows(path, kind)
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
    numbered = iter(rows)
    first = next(numbered, None)
    if first is None:
        raise ImportFailed("the file is empty")
    columns = check_header(first[1])
    width = len(columns)
    connection.execute(f"CREATE TABLE {quote(table)} ({', '.join(quote(c) for c in columns)})")
    insert = f"INSERT INTO {quote(table)} VALUES ({', '.join('?' * width)})"
    batch: list[Row] = []
    done = 0
    for number, row in numbered:
        if not row or all(cell in (None, "") for cell in row):
            continue
        if len(row) < width and rows.short_rows_padded:
            row += [None] * (width - len(row))
        if len(row) != width:
            raise ImportFailed(f"{len(row)} fields, but the header has {width}", number)
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            done += _insert(connection, insert, batch, cancelled)
            on_progress(Progress(done, rows.total, rows.fraction(done)))
    done += _insert(connection, insert, batch, cancelled)
    on_progress(Progress(done, rows.total, 1.0))
    return Imported(table, done, columns)


def _insert(
    connection: sqlite3.Connection, insert: str, batch: list[Row], cancelled: threading.Event
) -> int:
    if cancelled.is_set():
        raise ImportFailed("cancelled: the server is shutting down")
    connection.executemany(insert, batch)
    count = len(batch)
    batch.clear()
    return count
