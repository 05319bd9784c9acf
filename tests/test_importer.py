"""The importer: every row or nothing, and each bad input a failure naming its row."""

from __future__ import annotations

import csv
import datetime
import sqlite3
import threading
import zipfile
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster.jobs import importer
from broadcaster.jobs.importer import (
    BATCH_ROWS,
    CsvRows,
    ImportFailed,
    Progress,
    detect_kind,
    import_file,
    sniff,
)
from broadcaster.jobs.xlsx import FRAME_ROWS, XlsxRows

TABLE = "upload_test"


def write_xlsx(path: Path, rows: list[list[object]], *, write_only: bool = False) -> Path:
    """Write-only mode streams rows out and writes no <dimension> element."""
    book = openpyxl.Workbook(write_only=write_only)
    sheet = book.create_sheet() if write_only else book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def run(path: Path, cancelled: threading.Event | None = None) -> tuple[int, list[Progress]]:
    seen: list[Progress] = []
    with path.open("rb") as file:
        kind = detect_kind(path.name, file.read(4096))
    imported = import_file(
        path, kind, path.parent / "db.sqlite", TABLE, seen.append, cancelled or threading.Event()
    )
    assert imported.table == TABLE
    return imported.rows, seen


def table_rows(folder: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / "db.sqlite") as db:
        return db.execute(f'SELECT * FROM "{TABLE}"').fetchall()


def tables(folder: Path) -> list[str]:
    if not (folder / "db.sqlite").exists():
        return []
    with sqlite3.connect(folder / "db.sqlite") as db:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]


def test_csv_in_batches_with_progress(tmp_path: Path) -> None:
    count = BATCH_ROWS * 2 + 7
    lines = ["id,name,note"] + [f'{i},name {i},"a, ""quoted""\nnote"' for i in range(count)]
    path = tmp_path / "people.csv"
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    rows, progress = run(path)
    assert rows == count
    stored = table_rows(tmp_path)
    assert len(stored) == count
    assert stored[0] == ("0", "name 0", 'a, "quoted"\nnote')
    # Batches of rows read: the header is one of the first batch's.
    assert [p.rows_done for p in progress] == [BATCH_ROWS - 1, 2 * BATCH_ROWS - 1, count]
    assert progress[-1].fraction == 1.0
    assert all(p.total is None for p in progress)


def test_xlsx_with_typed_cells(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "typed.xlsx",
        [
            ["when", "count", "ratio", "label", "empty"],
            [datetime.datetime(2026, 11, 21, 10, 4, 5), 12, 0.5, "x", None],
            [datetime.date(2026, 1, 2), 3.0, 1e-3, "ü ✓", "y"],
        ],
    )
    rows, progress = run(path)
    assert rows == 2
    assert table_rows(tmp_path) == [
        ("2026-11-21T10:04:05", "12", "0.5", "x", None),
        ("2026-01-02T00:00:00", "3", "0.001", "ü ✓", "y"),
    ]
    assert progress[-1].total == 2


def test_header_only_file_makes_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"a,b\n\n")
    assert run(path)[0] == 0
    assert tables(tmp_path) == [TABLE]


LATE_LATIN1 = b"a,b\n" + b"1,2\n" * 5000 + "café,3\n".encode("latin-1") + b"1,2\n" * 10
LATE_QUOTE = b"a,b\n" + b"1,2\n" * (BATCH_ROWS + 10) + b'"1,2\n'
RAGGED = b"a,b,c\n" + b"1,2,3\n" * (BATCH_ROWS * 2) + b"1,2\n"
FAILURES = [
    # (file name, content, words of the reason, row)
    ("report.pdf", b"%PDF-1.4", "not a CSV or XLSX file", None),
    ("zip.csv", b"PK\x03\x04rest", "not a CSV or XLSX file", None),
    ("latin1.csv", "a,b\n1,2\ncafé,3\n".encode("latin-1"), "not UTF-8 text", 3),
    # Past the first blocks the decoder reads ahead: still blamed on its own row.
    ("late-latin1.csv", LATE_LATIN1, "not UTF-8 text (byte 4 of line 5002)", 5002),
    ("empty.csv", b"", "the file is empty", None),
    ("blank-first.csv", b"\n1,2\n", "no header row", 1),
    ("gap.csv", b"a,,c\n1,2,3\n", "column 2 has no name", 1),
    ("twice.csv", b"id,ID\n1,2\n", "appears twice", 1),
    ("ragged.csv", RAGGED, "2 fields, but the header has 3", BATCH_ROWS * 2 + 2),
    ("long.csv", b"a,b\n1,2,3\n", "3 fields, but the header has 2", 2),
    ("quote.csv", b'a,b\n"1,2\n', "malformed CSV", 2),
    # Rows are read a batch at a time: still named by their own number, and
    # the first problem is the one reported.
    ("late-quote.csv", LATE_QUOTE, "malformed CSV", BATCH_ROWS + 12),
    ("ragged-then-quote.csv", b'a,b\n1,2\n1\n1,2\n"1,2\n', "1 fields, but", 3),
    ("corrupt.xlsx", b"PK\x03\x04 this is not a zip archive", "not a valid XLSX file", None),
    ("text.xlsx", b"a,b\n1,2\n", "not a valid XLSX file", None),
]


@pytest.mark.parametrize(
    ("name", "content", "words", "row"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_bad_input_fails_naming_the_row_and_leaves_no_table(
    tmp_path: Path, name: str, content: bytes, words: str, row: int | None
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFailed) as failure:
        run(path)
    assert words in failure.value.reason
    assert failure.value.row == row
    assert tables(tmp_path) == []


def test_ragged_xlsx_row(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "r.xlsx", [["a", "b"], [1, 2], [1, 2, 3]])
    with pytest.raises(ImportFailed, match="row 3: 3 fields, but the header has 2"):
        run(path)
    assert tables(tmp_path) == []


def test_cancelled_import_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"1\n" * (BATCH_ROWS * 3))
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(ImportFailed, match="cancelled"):
        run(path, cancelled)
    assert tables(tmp_path) == []


@pytest.mark.parametrize("write_only", [True, False], ids=["no dimension", "dimension"])
def test_every_xlsx_has_a_total(tmp_path: Path, write_only: bool) -> None:
    count = FRAME_ROWS + 3
    path = write_xlsx(
        tmp_path / "t.xlsx",
        [["a", "b"], *([i, f"x{i}"] for i in range(count))],
        write_only=write_only,
    )
    with zipfile.ZipFile(path) as archive:
        assert (b"<dimension" in archive.read("xl/worksheets/sheet1.xml")) is not write_only
    rows = XlsxRows(path, lambda: None)
    rows.close()
    assert rows.total == count
    imported, progress = run(path)
    assert imported == count
    stored = [(p.total, p.fraction) for p in progress if p.rows_done]
    assert len(stored) > 1
    assert stored == [(count, p.rows_done / count) for p in progress if p.rows_done]
    assert stored[-1] == (count, 1.0)


def test_a_database_that_cannot_be_written_fails_the_import(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(ImportFailed, match=r"the database could not be written \(unable to open"):
        import_file(path, "csv", tmp_path / "gone" / "db.sqlite", TABLE, print, threading.Event())


def test_an_upload_that_has_gone_fails_the_import(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match=r"the upload could not be read \(No such file"):
        sniff(tmp_path / "gone.csv", "gone.csv")
    with pytest.raises(ImportFailed, match=r"the upload could not be read \(No such file"):
        import_file(
            tmp_path / "gone.csv", "csv", tmp_path / "db.sqlite", TABLE, print, threading.Event()
        )


def csv_module_rows(path: Path) -> list[list[str]]:
    """What csv.reader reads, the importer's reader before the unquoted fast path."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        return [row or [""] for row in csv.reader(file, strict=True)]  # [] and [""]: both blank


def importer_rows(path: Path) -> list[list[str | None]]:
    rows = CsvRows(path)
    try:
        return [row or [""] for batch in rows.batches() for row in batch]
    finally:
        rows.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet='ab,"\r\né', max_size=80))
def test_csv_rows_are_what_csv_reader_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    # Tiny blocks: quotes, CRs and line ends fall across block boundaries.
    monkeypatch.setattr(importer, "BLOCK_BYTES", 3)
    path = tmp_path / "any.csv"
    path.write_text(text, encoding="utf-8", newline="")
    try:
        expected: list[list[str]] | str = csv_module_rows(path)
    except csv.Error as error:
        expected = f"malformed CSV: {error}"
    try:
        got: list[list[str | None]] | str = importer_rows(path)
    except ImportFailed as failure:
        got = failure.reason
    assert got == expected


def test_a_quote_after_plain_blocks_is_named_by_its_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BLOCK_BYTES", 64)
    path = tmp_path / "late.csv"
    path.write_bytes(b"a,b\r\n" + b"1,2\r\n" * 100 + b'"1,2\r\n')
    with pytest.raises(ImportFailed) as failure:
        run(path)
    assert "malformed CSV" in failure.value.reason
    assert failure.value.row == 102


def test_a_line_past_csvs_field_limit_fails_as_before(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(b"a\n" + b"x" * (csv.field_size_limit() + 1) + b"\n")
    with pytest.raises(ImportFailed, match="field larger than field limit") as failure:
        run(path)
    assert failure.value.row == 2
