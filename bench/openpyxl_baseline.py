"""The XLSX import as it was before calamine: openpyxl's read-only reader.

Kept runnable as the import benchmark's baseline:

    python -m bench.openpyxl_baseline FILE.xlsx

imports FILE into a new table in a temporary database through
`broadcaster.jobs.importer.import_file`, the same path as the server, with only the
reader swapped, and prints one JSON line: rows and seconds.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from broadcaster.jobs import importer
from broadcaster.jobs.importer import ImportFailed, Row, Rows
from tests.support.openpyxl_cells import openpyxl_text


class OpenpyxlRows:
    short_rows_padded = True

    def __init__(self, path: Path) -> None:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        self._file: BinaryIO = path.open("rb")
        try:
            self._book = openpyxl.load_workbook(self._file, read_only=True, data_only=True)
            self._sheet = self._book.worksheets[0]
        except (zipfile.BadZipFile, InvalidFileException, KeyError, IndexError, OSError) as error:
            self._file.close()
            raise ImportFailed(f"not a valid XLSX file ({error})") from None
        max_row = self._sheet.max_row
        self.total = max_row - 1 if isinstance(max_row, int) and max_row > 0 else None

    def batches(self) -> Iterator[list[Row]]:
        rows = (
            _trimmed([openpyxl_text(v) for v in values])
            for values in self._sheet.iter_rows(values_only=True)
        )
        while batch := list(itertools.islice(rows, importer.BATCH_ROWS)):
            yield batch

    def fraction(self, rows_done: int) -> float:
        return min(1.0, rows_done / self.total) if self.total else 0.0

    def close(self) -> None:
        self._book.close()
        self._file.close()


def _trimmed(row: Row) -> Row:
    end = len(row)
    while end and row[end - 1] in (None, ""):
        end -= 1
    return row[:end]


def main(source: Path) -> None:
    def openpyxl_rows(path: Path, kind: str, while_loading: object, xlsx_budget: int = 0) -> Rows:
        return OpenpyxlRows(path)

    importer.open_rows = openpyxl_rows  # the one swap: everything else is the server's path
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        imported = importer.import_file(
            source, "xlsx", Path(folder) / "db.sqlite", "baseline", lambda _: None,
            threading.Event(),
        )  # fmt: skip
        seconds = time.perf_counter() - started
    print(json.dumps({"rows": imported.rows, "seconds": seconds}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
