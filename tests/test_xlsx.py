"""The calamine XLSX reader gives each cell the text openpyxl's value gave before.

The workbook is written by hand, part by part, so that every kind of cell is
there as Excel writes it: shared and inline strings, formulas with cached
values, styled dates and times, booleans, errors.
"""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import openpyxl
import pytest

from broadcaster.jobs import xlsx
from broadcaster.jobs.importer import ImportFailed, Progress, import_file
from broadcaster.jobs.xlsx import XlsxRows
from tests.support.openpyxl_cells import openpyxl_text

PKG = "http://schemas.openxmlformats.org/package/2006"
DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
OFFICE = "application/vnd.openxmlformats-officedocument.spreadsheetml"
PARTS = {
    "/xl/workbook.xml": "sheet.main",
    "/xl/worksheets/sheet1.xml": "worksheet",
    "/xl/styles.xml": "styles",
    "/xl/sharedStrings.xml": "sharedStrings",
}
CONTENT_TYPES = (
    f'<Types xmlns="{PKG}/content-types">'
    f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    + "".join(
        f'<Override PartName="{part}" ContentType="{OFFICE}.{kind}+xml"/>'
        for part, kind in PARTS.items()
    )
    + "</Types>"
)


def relationships(targets: dict[str, str]) -> str:
    return (
        f'<Relationships xmlns="{PKG}/relationships">'
        + "".join(
            f'<Relationship Id="rId{n}" Type="{DOC}/{kind}" Target="{target}"/>'
            for n, (kind, target) in enumerate(targets.items(), 1)
        )
        + "</Relationships>"
    )


ROOT_RELS = relationships({"officeDocument": "xl/workbook.xml"})
WORKBOOK = (
    f'<workbook xmlns="{MAIN}" xmlns:r="{DOC}">'
    '<sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = relationships(
    {
        "worksheet": "worksheets/sheet1.xml",
        "styles": "styles.xml",
        "sharedStrings": "sharedStrings.xml",
    }
)
# Styles by index: 0 general, 1 date (14), 2 date-time (22), 3 time (21),
# 4 duration [h]:mm:ss (46), 5 a custom date format.
STYLES = f"""<styleSheet xmlns="{MAIN}">
<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd\\ hh:mm"/></numFmts>
<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="1"><fill><patternFill patternType="none"/></fill></fills>
<borders count="1"><border/></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="6">
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="22" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="21" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="46" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
</cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""
SHARED = ["kind", "value", "shared ü ✓", "a &amp; b &lt;c&gt;"]
SHARED_STRINGS = (
    f'<sst xmlns="{MAIN}">'
    + "".join(f"<si><t>{s}</t></si>" for s in SHARED)
    + '<si><r><t xml:space="preserve">rich </t></r><r><rPr><b/></rPr><t>text</t></r></si></sst>'
)

# (what, the <c> element's attributes and content for column B, the expected text)
CELLS = [
    ("shared string", 't="s"><v>2</v>', "shared ü ✓"),
    ("shared string with entities", 't="s"><v>3</v>', "a & b <c>"),
    ("rich-text shared string", 't="s"><v>4</v>', "rich text"),
    ("inline string", 't="inlineStr"><is><t>inline</t></is>', "inline"),
    ("inline string, spaces kept", 't="inlineStr"><is><t xml:space="preserve"> x </t></is>', " x "),
    ("integer", "><v>42</v>", "42"),
    ("negative integer", "><v>-7</v>", "-7"),
    ("integer-valued float", "><v>3.0</v>", "3"),
    ("float", "><v>0.1</v>", "0.1"),
    ("small float", "><v>1E-3</v>", "0.001"),
    ("tiny float", "><v>1.5E-10</v>", "1.5e-10"),
    ("large float", "><v>1.2345678901234567E+19</v>", "12345678901234567168"),
    ("2**53", "><v>9007199254740992</v>", "9007199254740992"),
    ("15-digit integer, as Excel keeps", "><v>123456789012345</v>", "123456789012345"),
    ("true", 't="b"><v>1</v>', "True"),
    ("false", 't="b"><v>0</v>', "False"),
    ("date", 's="1"><v>46347</v>', "2026-11-21T00:00:00"),
    ("date before March 1900", 's="1"><v>15</v>', "1900-01-15T00:00:00"),
    ("date-time", 's="2"><v>46347.4195023148</v>', "2026-11-21T10:04:05"),
    ("custom date format", 's="5"><v>46023.5</v>', "2026-01-01T12:00:00"),
    ("time", 's="3"><v>0.4195023148148148</v>', "10:04:05"),
    ("time with milliseconds", 's="3"><v>0.41950375</v>', "10:04:05.124000"),
    ("duration", 's="4"><v>1.5</v>', "1 day, 12:00:00"),
    ("formula, cached number", "><f>6*7</f><v>42</v>", "42"),
    ("formula, cached string", 't="str"><f>"a"&amp;"b"</f><v>ab</v>', "ab"),
    ("formula, cached boolean", 't="b"><f>1=1</f><v>1</v>', "True"),
    ("formula, cached date", 's="1"><f>DATE(2026,11,21)</f><v>46347</v>', "2026-11-21T00:00:00"),
    ("empty, styled", 's="1">', None),
]
# Where calamine cannot give what openpyxl gave: (what, openpyxl's text).
DIFFERENCES = {
    # An error value: calamine's Python binding has no type for it, and gives "".
    "error": ("#DIV/0!", None),
    # Past 2**53 calamine parses the number as a float, as Excel itself does
    # (Excel keeps 15 significant digits), where openpyxl kept the written digits.
    "integer past 2**53": ("12345678901234567890", "12345678901234567168"),
}
DIFFERENT_CELLS = [
    ("error", 't="e"><f>1/0</f><v>#DIV/0!</v>'),
    ("integer past 2**53", "><v>12345678901234567890</v>"),
]


def cell(ref: str, body: str) -> str:
    return f'<c r="{ref}" {body}</c>' if body != 's="1">' else f'<c r="{ref}" s="1"/>'


def sheet_xml(rows: list[tuple[str, str]]) -> str:
    lines = ['<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>']
    for number, (what, body) in enumerate(rows, 2):
        lines.append(
            f'<row r="{number}"><c r="A{number}" t="inlineStr"><is><t>{what}</t></is></c>'
            f"{cell(f'B{number}', body)}</row>"
        )
    return (
        f'<worksheet xmlns="{MAIN}">'
        f'<dimension ref="A1:B{len(rows) + 1}"/><sheetData>{"".join(lines)}</sheetData></worksheet>'
    )


def write_parts(path: Path, sheet: str) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", CONTENT_TYPES)
        book.writestr("_rels/.rels", ROOT_RELS)
        book.writestr("xl/workbook.xml", WORKBOOK)
        book.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        book.writestr("xl/styles.xml", STYLES)
        book.writestr("xl/sharedStrings.xml", SHARED_STRINGS)
        book.writestr("xl/worksheets/sheet1.xml", sheet)
    return path


def openpyxl_rows(path: Path) -> list[list[str | None]]:
    with path.open("rb") as file:
        book = openpyxl.load_workbook(file, read_only=True, data_only=True)
        rows = [
            [openpyxl_text(v) for v in row]
            for row in book.worksheets[0].iter_rows(values_only=True)
        ]
        book.close()
    return rows


def calamine_rows(path: Path) -> list[list[str | None]]:
    rows = XlsxRows(path, lambda: None)
    try:
        return [row for batch in rows.batches() for row in batch]
    finally:
        rows.close()


@pytest.fixture(scope="module")
def typed_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cells = [(what, body) for what, body, _ in CELLS] + DIFFERENT_CELLS
    return write_parts(tmp_path_factory.mktemp("xlsx") / "typed.xlsx", sheet_xml(cells))


@pytest.mark.parametrize(
    ("what", "expected"), [(c[0], c[2]) for c in CELLS], ids=[c[0] for c in CELLS]
)
def test_cell_text_matches_openpyxl(typed_book: Path, what: str, expected: str | None) -> None:
    before = {row[0]: (row[1:] or [None])[0] for row in openpyxl_rows(typed_book)}
    after = {row[0]: (row[1:] or [None])[0] for row in calamine_rows(typed_book)}
    assert before[what] == expected
    assert after[what] == expected


@pytest.mark.parametrize("what", sorted(DIFFERENCES))
def test_known_differences_from_openpyxl(typed_book: Path, what: str) -> None:
    before = {row[0]: (row[1:] or [None])[0] for row in openpyxl_rows(typed_book)}
    after = {row[0]: (row[1:] or [None])[0] for row in calamine_rows(typed_book)}
    assert (before[what], after[what]) == DIFFERENCES[what]


def test_total_is_known_before_the_first_row(typed_book: Path) -> None:
    rows = XlsxRows(typed_book, lambda: None)
    try:
        assert rows.total == len(CELLS) + len(DIFFERENT_CELLS)
    finally:
        rows.close()


def test_the_reader_works_beside_a_thousand_open_connections(typed_book: Path) -> None:
    """A busy server holds thousands of sockets: the reader's pipe gets a
    descriptor past 1023, which select() cannot watch."""
    held = [open(os.devnull, "rb") for _ in range(1100)]  # noqa: SIM115
    try:
        rows = XlsxRows(typed_book, lambda: None)
        rows.close()
    finally:
        for file in held:
            file.close()
    assert rows.total == len(CELLS) + len(DIFFERENT_CELLS)


def test_leading_empty_columns_and_rows_are_kept(tmp_path: Path) -> None:
    # openpyxl's rows start at A1; calamine's grid at the first used cell.
    sheet = (
        f'<worksheet xmlns="{MAIN}"><sheetData>'
        '<row r="2"><c r="C2" t="inlineStr"><is><t>h</t></is></c></row>'
        '<row r="3"><c r="C3"><v>1</v></c><c r="D3"><v>2</v></c></row>'
        "</sheetData></worksheet>"
    )
    path = write_parts(tmp_path / "offset.xlsx", sheet)
    assert (
        calamine_rows(path)
        == openpyxl_rows(path)[:3]
        == [[], [None, None, "h"], [None, None, "1", "2"]]
    )


def test_a_sheet_too_big_for_the_budget_fails_the_import_not_the_server(tmp_path: Path) -> None:
    # Two cells far apart: calamine's dense grid would need 512 GiB, and a failed
    # Rust allocation aborts the process that makes it.
    sheet = (
        f'<worksheet xmlns="{MAIN}"><sheetData>'
        '<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c></row>'
        '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
        "</sheetData></worksheet>"
    )
    path = write_parts(tmp_path / "sparse.xlsx", sheet)
    with pytest.raises(
        ImportFailed,
        match=r"does not fit in the XLSX reader's memory budget \(2048 MiB, --xlsx-memory-mib\):"
        r" it holds every cell from the sheet's first used cell to its last, empty ones too$",
    ):
        import_file(path, "xlsx", tmp_path / "db.sqlite", "t", lambda _: None, threading.Event())


def test_progress_while_calamine_loads_the_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing comes from the reader until the whole sheet is loaded: the job
    # still reports, and can still be cancelled, while it waits.
    monkeypatch.setattr(xlsx, "WAIT_TICK", 0.001)
    rows = "".join(
        f'<row r="{n}"><c r="A{n}"><v>{n}</v></c><c r="B{n}"><v>{n * 2}</v></c></row>'
        for n in range(1, 20_001)
    )
    path = write_parts(
        tmp_path / "long.xlsx",
        f'<worksheet xmlns="{MAIN}"><sheetData>{rows}</sheetData></worksheet>',
    )
    seen: list[Progress] = []
    cancelled = threading.Event()

    def on_progress(update: Progress) -> None:
        seen.append(update)
        if len(seen) == 3:
            cancelled.set()

    with pytest.raises(ImportFailed, match="cancelled"):
        import_file(path, "xlsx", tmp_path / "db.sqlite", "t", on_progress, cancelled)
    assert [(p.rows_done, p.total) for p in seen] == [(0, None)] * 3
