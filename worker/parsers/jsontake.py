"""JSON values -> a batch's rows, whichever parser read them (ijson, or msgspec on the fast
path): objects become rows of their texts, anything else an error entry, as do records
holding a NUL or a field over the cap."""

from __future__ import annotations

from itertools import chain
from typing import Any

import orjson

from worker.parsers import RecordBatch, field_cap_reason, jsonrows


class Out:
    """A batch being filled (RecordBatch's lines are a Sequence: ranges for the CSV parser)."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        self.errors: list[tuple[int, str, str]] = []

    def batch(self) -> RecordBatch:
        return RecordBatch(self.rows, self.lines, self.errors)


class Rows:
    """Numbers the records (1-based, in `records`) and turns them into rows: one text per
    `header` attribute, by `paths` (each a tuple of keys). `nul` is set once the document
    holds a `\\u0000`: rows are checked for NUL from then on."""

    def __init__(self, header: list[str], paths: list[tuple[str, ...]], max_field_chars: int,
                 details: dict[str, Any]) -> None:
        self.header = header
        self.max_field_chars = max_field_chars
        self.details = details
        self.records = 0
        self.nul = False
        self._row = jsonrows.row_maker(paths)

    def emit(self, values: list[Any], out: Out) -> None:
        base = self.records
        self.records += len(values)
        row = self._row
        rows, lines = out.rows, out.lines
        try:
            if all(v.__class__ is dict for v in values):
                new = list(map(row, values))
                if ((not self.nul or "\x00" not in "".join(chain.from_iterable(new)))
                        and max(map(len, chain.from_iterable(new)), default=0)
                        <= self.max_field_chars):
                    rows += new
                    lines += range(base + 1, base + 1 + len(values))
                    return
        except (TypeError, ValueError, KeyError, orjson.JSONEncodeError):
            pass  # one of them is bad: record by record, below
        for i, value in enumerate(values, base + 1):
            self._one(i, value, out)

    def _one(self, n: int, value: Any, out: Out) -> None:
        if not isinstance(value, dict):
            out.errors.append((n, jsonrows.raw(value),
                               f"record {n} is {jsonrows.kind(value)}, not an object"))
            return
        try:
            row = self._row(value)
        except (TypeError, ValueError, KeyError, orjson.JSONEncodeError) as exc:
            out.errors.append((n, jsonrows.raw(value), f"record {n} cannot be read: {exc}"))
            return
        if "\x00" in "".join(row):
            self.details["nul_records"] = self.details.get("nul_records", 0) + 1
            out.errors.append((n, jsonrows.raw(value),
                               "a value holds a NUL character (\\u0000)"))
            return
        longest = max(map(len, row), default=0)
        if longest > self.max_field_chars:
            name = self.header[[len(v) for v in row].index(longest)]
            out.errors.append((n, jsonrows.raw(value),
                               field_cap_reason(name, longest, self.max_field_chars)))
            return
        out.rows.append(row)
        out.lines.append(n)
