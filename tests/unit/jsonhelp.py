"""A JSON document through JsonRecords on either path, and the check that both paths give
the same, for the fast path's tests and the conformance corpus'."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.unit.recordhelp import json_records
from worker.errors import FeedError


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str


Outcome = tuple[list[list[str]], list[int], list[tuple[int, str, str]], dict[str, Any], int]


def outcome(doc: bytes, mapping: dict[str, Any], fast: bool, sizes: Iterable[int] = (),
            vouched: bool = True) -> Outcome | Failure:
    """What the parser makes of `doc` fed in pieces of `sizes` (then the rest), then closed."""
    parser = json_records(mapping, fast=fast)
    rows: list[list[str]] = []
    lines: list[int] = []
    errors: list[tuple[int, str, str]] = []
    at = 0
    try:
        for size in [*sizes, len(doc)]:
            batch = parser.feed(doc[at:at + size])
            at += size
            rows += batch.rows
            lines += batch.lines
            errors += batch.errors
        batch = parser.close(vouched)
    except FeedError as exc:
        return Failure(type(exc).__name__, str(exc))
    rows += batch.rows
    lines += batch.lines
    errors += batch.errors
    return rows, lines, errors, parser.details, parser.records


_SPAN = re.compile(r"in bytes \d+-\d+")


def assert_same(doc: bytes, mapping: dict[str, Any], sizes: list[int],
                vouched: bool = True) -> None:
    """The fast path gives what ijson gives. Where yajl places an error by the pieces it was
    given (a number at a piece's end, a span `in bytes A-B`), the fast path, which hands its
    held bytes to ijson at once, gives ijson's verdict on the document whole."""
    new = outcome(doc, mapping, True, sizes, vouched)
    old = outcome(doc, mapping, False, sizes, vouched)
    if new == old:
        return
    assert isinstance(new, Failure), (doc, sizes, new, old)
    assert isinstance(old, Failure), (doc, sizes, new, old)
    assert new.kind == old.kind, (doc, sizes, new, old)
    whole = outcome(doc, mapping, False, [], vouched)
    if new == whole:
        return
    assert _SPAN.sub("", new.message) == _SPAN.sub("", old.message), (doc, sizes, new, old)
