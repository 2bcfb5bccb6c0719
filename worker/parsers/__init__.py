"""Incremental parsers: bytes or text in, records out. They know nothing of Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.errors import FeedError


@dataclass
class RecordBatch:
    """What one chunk gave, whatever the format: records (their texts in the parser's
    header order) with their first line (CSV) or record number (XML, JSON), and unreadable
    records as (line, raw, reason); a spreadsheet's error cells in its rows as (line,
    column, error), for the pipeline to reject the rows where the mapping reads one."""

    rows: list[list[str]] = field(default_factory=list)
    lines: Sequence[int] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    cell_errors: list[tuple[int, int, str]] = field(default_factory=list)


def field_cap_reason(name: str, length: int, cap: int) -> str:
    """Why a record with an over-long field is rejected."""
    return (f"{name} is {length} characters long, over the {cap}-character cap "
            "(FEED_WORKER_MAX_FIELD_CHARS)")


class CutShort(FeedError):
    """The document ends where a whole one cannot (a CSV record without its line break or
    inside a quoted field, an XML root element not closed, JSON not closed), raised at
    close only when the transport could not vouch for the length: the download was most
    likely cut short, and the pipeline reports it so (TruncatedError)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
