"""How the importer turned openpyxl's cell values into text, before calamine:
the reference both the cell-type table (tests/test_xlsx.py) and the openpyxl
baseline (bench/openpyxl_baseline.py) compare with."""

from __future__ import annotations

import datetime


def openpyxl_text(value: object) -> str | None:
    """What the importer stored for one of openpyxl's cell values."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
