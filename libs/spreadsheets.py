"""CSV that is safe to open in a spreadsheet: cells a spreadsheet would run as a formula are escaped."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell; text a spreadsheet would run as a formula (``=cmd|'/C calc'!A0``: a user-chosen image
    or display name) gets a leading apostrophe, OWASP's rule for CSV injection (issue 9)."""
    if isinstance(value, list | dict):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


def csv_bytes(rows: Iterable[Mapping[str, Any]], columns: list[str], *, header: bool = True) -> bytes:
    """The rows as CSV (UTF-8), every cell through :func:`safe_cell`; ``header``: the column names first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: safe_cell(row.get(key)) for key in columns})
    return buffer.getvalue().encode()
