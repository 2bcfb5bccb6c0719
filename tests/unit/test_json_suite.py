"""The JSON conformance corpus (nst/JSONTestSuite), each file a feed whose records are at
the top level (mapping {}), fed whole and a byte at a time:

- n_ (not JSON): a parse error naming the byte, in bounded time;
- y_ (JSON): never a parse error (a shape error is fine: most are not arrays of records);
- i_ (either): a FeedError or records, never another exception, never a hang.

A top-level array takes the fast path (msgspec, jsonchunk): every file also gives there
what ijson alone gives (the same records, errors and failure), fed whole and a byte at a
time, as a document and as newline-delimited JSON.

The corpus lives outside the repository (../shared/corpus beside the checkout, or
TEST_CORPUS_DIR) and is used as it is.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.corpus import CORPUS as SHARED
from tests.unit.jsonhelp import assert_same
from tests.unit.recordhelp import json_records
from worker.errors import FeedError
from worker.parsers import RecordBatch
from worker.parsers.json import JsonShapeError
from worker.parsers.jsonstream import JsonSyntaxError

CORPUS = SHARED / "json-test-suite"
LIMIT_S = 1.0


def _names() -> list[str]:
    if not CORPUS.is_dir():
        raise FileNotFoundError(
            f"json-test-suite corpus not found at {CORPUS}: set TEST_CORPUS_DIR to the folder "
            "holding json-test-suite/ (see ../shared/corpus/README.md)")
    return sorted(p.name for p in CORPUS.glob("*.json"))


NAMES = _names()


class Hung(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupts a parse that runs past `seconds` (the main thread's SIGALRM)."""

    def expire(signum: int, frame: object) -> None:
        raise Hung(f"still parsing after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(data: bytes, chunk: int | None) -> RecordBatch | FeedError:
    """What the parser makes of the file: its records, or the FeedError it raised."""
    parser = json_records({})
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(len(data))]
    out = RecordBatch(lines=[])
    assert isinstance(out.lines, list)
    t = time.perf_counter()
    try:
        with deadline(5 * LIMIT_S):
            for piece in pieces:
                batch = parser.feed(piece)
                out.rows += batch.rows
                out.lines += batch.lines
                out.errors += batch.errors
            batch = parser.close()
    except FeedError as exc:
        result: RecordBatch | FeedError = exc
    else:
        out.rows += batch.rows
        out.lines += batch.lines
        out.errors += batch.errors
        result = out
    assert time.perf_counter() - t < LIMIT_S, "took too long"
    return result


def test_corpus_is_complete() -> None:
    assert len(NAMES) == 318
    kinds = {name[:2] for name in NAMES}
    assert kinds == {"n_", "y_", "i_"}


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("n_")])
def test_not_json_is_a_parse_error_naming_the_byte(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    for chunk in (None, 1):
        result = outcome(data, chunk)
        assert isinstance(result, JsonSyntaxError), f"{name} (chunk {chunk}): {result!r}"
        assert "malformed JSON" in str(result)
        assert " byte" in str(result)  # "at byte N", or "in bytes A-B"
        if result.offset is not None:
            assert 0 <= result.offset <= len(data)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("y_")])
def test_json_is_never_a_parse_error(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    results = [outcome(data, chunk) for chunk in (None, 1)]
    for result in results:
        assert not isinstance(result, JsonSyntaxError), f"{name}: {result}"
        assert isinstance(result, (RecordBatch, JsonShapeError)), f"{name}: {result!r}"
    whole, bytewise = results
    assert type(whole) is type(bytewise)
    assert str(whole) == str(bytewise)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("i_")])
def test_implementation_defined_either_way_never_a_crash(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    results = [outcome(data, chunk) for chunk in (None, 1)]
    for result in results:
        assert isinstance(result, (RecordBatch, FeedError)), f"{name}: {result!r}"
    whole, bytewise = results
    assert type(whole) is type(bytewise)  # the same verdict however the bytes come


def test_shape_verdicts() -> None:
    """An array is records (an element that is not an object is an error entry); any other
    JSON value is a shape error."""
    result = outcome((CORPUS / "y_object_simple.json").read_bytes(), None)
    assert isinstance(result, JsonShapeError)  # {"a":[]}: one object, not records
    result = outcome((CORPUS / "y_array_empty.json").read_bytes(), None)
    assert isinstance(result, RecordBatch)
    assert (result.rows, result.errors) == ([], [])
    result = outcome((CORPUS / "y_array_with_several_null.json").read_bytes(), None)
    assert isinstance(result, RecordBatch)
    assert result.rows == []
    assert [n for n, _, _ in result.errors] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", NAMES)
def test_the_fast_path_gives_what_ijson_gives(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    for mapping in ({}, {"format": "ndjson"}):
        for sizes in ([], [1] * len(data)):
            for vouched in (True, False):
                assert_same(data, mapping, sizes, vouched)
