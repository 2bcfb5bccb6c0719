"""A spreadsheet cell's value as the text a CSV export would hold, typed correctly.

- a whole number is its digits (`3`, not `3.0`; a 13-digit barcode cell is its exact
  digits, never `4.00638E+12`);
- any other number is rounded to 15 significant digits, the precision a spreadsheet keeps
  and shows (`19.9` stays `19.9`; a price computed as `23.680999999999997` is `23.681`),
  written without an exponent (`0.0000001`, not `1e-07`);
- a date is ISO text (`2026-12-05`), a date with a time `2026-12-05T10:15:00`, a time
  `10:15:00`; a duration its seconds;
- TRUE and FALSE as a spreadsheet shows them; an empty cell is empty text.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Collection, Sequence
from decimal import Decimal

from worker.parsers import RecordBatch

Cell = object


def number_text(value: float) -> str:
    """A number cell's text (see the module doc)."""
    if value.is_integer():
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    text = format(value, ".15g")
    if "e" in text:
        text = format(Decimal(text), "f")
    return text


def cell_text(value: Cell) -> str:
    """Any cell's text (see the module doc)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is float:
        return number_text(value)  # type: ignore[arg-type]
    if kind is int:
        return str(value)
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None and value.microsecond == 0:
            return value.strftime("%Y-%m-%dT%H:%M:%S")
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return number_text(value.total_seconds())
    return str(value)


def row_texts(row: Sequence[Cell]) -> list[str]:
    """A row's cells as texts: texts as they are, the rest through cell_text."""
    return [c if type(c) is str else cell_text(c) for c in row]


def letters(column: int) -> str:
    """A 0-based column index as a spreadsheet names it (0: A, 26: AA)."""
    out = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        out = chr(65 + rest) + out
    return out


def reject_error_cells(batch: RecordBatch, read: Collection[int],
                       delimiter: str) -> RecordBatch:
    """The batch with its rows that hold an error cell (`#N/A`, `#DIV/0!`) in a column the
    mapping reads (`read`) turned into rejects: the error is no value, and an empty one
    would clear the item's attribute. An error in a column nothing reads is left empty."""
    bad: dict[int, str] = {}
    for line, column, code in batch.cell_errors:
        if column in read and line not in bad:
            bad[line] = f"column {letters(column)} holds the error {code}"
    if not bad:
        return batch
    rows: list[list[str]] = []
    lines: list[int] = []
    errors = list(batch.errors)
    for row, line in zip(batch.rows, batch.lines, strict=True):
        reason = bad.get(line)
        if reason is None:
            rows.append(row)
            lines.append(line)
        else:
            errors.append((line, delimiter.join(row), reason))
    return RecordBatch(rows, lines, errors)
