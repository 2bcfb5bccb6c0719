"""Feeding a structured (XML/JSON) parser in chunks, for the parser tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from worker.parsers import RecordBatch


class RecordParser(Protocol):
    header: list[str]
    records: int

    def feed(self, data: bytes) -> RecordBatch: ...

    def close(self) -> RecordBatch: ...


def parse_with(make: Callable[[dict[str, Any]], RecordParser], mapping: dict[str, Any],
               chunks: Iterable[bytes]) -> RecordBatch:
    """Every batch of a document fed as `chunks`, then close(), put together."""
    parser = make(mapping)
    out = RecordBatch(lines=[])
    assert isinstance(out.lines, list)
    batches = [parser.feed(chunk) for chunk in chunks]
    batches.append(parser.close())
    for batch in batches:
        assert len(batch.rows) == len(batch.lines)
        assert all(len(row) == len(parser.header) for row in batch.rows)
        out.rows += batch.rows
        out.lines += batch.lines
        out.errors += batch.errors
    assert parser.records == len(out.rows) + len(out.errors)
    return out
