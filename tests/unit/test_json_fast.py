"""The fast path of JSON records (jsonchunk: a top-level array's records and NDJSON lines
cut out of the bytes and decoded in runs by msgspec) against ijson's: the same rows, record
numbers, errors and failures for the same bytes however they are cut, numbers exact, a
huge record read whole, memory flat."""

from __future__ import annotations

import json
import random
import re
import tracemalloc
from typing import Any

import pytest

from tests.unit.jsonhelp import Failure, assert_same, outcome
from tests.unit.recordhelp import json_records
from worker.model import ATTRIBUTES
from worker.parsers.jsonchunk import CLOSE, COMMA, RUN_CAP, WRONG, last_cut

FIELDS = {"externalId": "id", "inventoryQuantity": "stock.available", "name": "name",
          "retailPrice": "price", "options": "options", "images": "images.0"}


# -- documents, good and broken


_TEXTS = ["x", "a,b", 'q"uote', "back\\slash", "]},[{", "caf\u00e9", "tab\t", "nul\u0000",
          "line\nbreak", "", "\\\\\"", "\ud7ff"]
_NUMBERS = ["1e2", "1E+2", "-0", "-0.0", "1.0", "0.10", "1e-7", "12345678901234567890123",
            "123456789012345678901234567890.5", "1e999999"]
_BREAKS = [b'"', b"\\", b",", b"]", b"}", b"[", b"{", b"\n", b"\x00", b"\x0c", b"\xff",
           b"\\ud800", b"\\udc00", b"\xed\xa0\x80", b"1e999", b"  ", b"\r\n", b"null", b"\\u0000",
           b"\\\"", b"\\\\", b"tru", b":", b"01", b"\xef\xbb\xbf"]


def _value(rnd: random.Random, depth: int = 0) -> Any:
    r = rnd.random()
    if depth < 3 and r < 0.15:
        return {rnd.choice("abxyz"): _value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}
    if depth < 3 and r < 0.25:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    if r < 0.55:
        return rnd.choice(_TEXTS)
    if r < 0.65:
        return rnd.choice([True, False, None])
    if r < 0.7:
        return "\\" * rnd.randint(1, 5) + '"' * rnd.randint(0, 2) + "x" * rnd.randint(0, 6000)
    return rnd.choice([0, -1, 7, "NUMBER"])


def _record(rnd: random.Random) -> Any:
    if rnd.random() < 0.05:
        return _value(rnd)
    return {"id": _value(rnd), "name": _value(rnd), "price": _value(rnd),
            "stock": {"available": _value(rnd)} if rnd.random() < 0.7 else _value(rnd),
            "options": _value(rnd), "images": [_value(rnd)]}


def _text(value: Any, rnd: random.Random) -> str:
    text = json.dumps(value, ensure_ascii=rnd.random() < 0.5)
    return re.sub('"NUMBER"', lambda _: rnd.choice(_NUMBERS), text)


def document(rnd: random.Random, most: int = 12,
             broken: bool = True) -> tuple[bytes, dict[str, Any]]:
    """A top-level array or NDJSON of random records, maybe `broken` in a few places."""
    records = [_text(_record(rnd), rnd) for _ in range(rnd.randint(0, most))]
    if rnd.random() < 0.5:
        sep = rnd.choice([",", ", ", ",\n", " ,\n  "])
        text = (rnd.choice(["", " ", "\ufeff", "\n"]) + "[" + rnd.choice(["", "\n"])
                + sep.join(records) + rnd.choice(["", "\n"]) + "]" + rnd.choice(["", "\n"]))
        mapping: dict[str, Any] = {"fields": FIELDS}
    else:
        text = "".join(r + rnd.choice(["\n", "\r\n", "\n\n", "\n \n"]) for r in records)
        if rnd.random() < 0.3:
            text = text.rstrip("\n")
        mapping = {"fields": FIELDS, "format": rnd.choice(["", "ndjson"])}
    doc = text.encode("utf-8", "surrogatepass")
    for _ in range(rnd.choice([0, 0, 1, 1, 2, 3]) if broken else 0):
        i = rnd.randrange(len(doc) + 1)
        if rnd.random() < 0.4:
            doc = doc[:i] + rnd.choice(_BREAKS) + doc[i:]
        elif rnd.random() < 0.5:
            doc = doc[:i] + doc[i + rnd.randint(1, 4):]
        else:
            doc = doc[:i] + rnd.choice(_BREAKS) + doc[i + 1:]
    return doc, mapping


def _cuts(rnd: random.Random, doc: bytes) -> list[list[int]]:
    cuts: list[list[int]] = [[]]
    cuts += [[rnd.randint(1, max(len(doc) // 2, 1)) for _ in range(rnd.randint(1, 6))]
             for _ in range(2)]
    if len(doc) < 400:
        cuts.append([1] * len(doc))
    return cuts


@pytest.mark.parametrize("seed", range(8))
def test_the_fast_path_gives_what_ijson_gives(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(120):
        doc, mapping = document(rnd)
        for sizes in _cuts(rnd, doc):
            for vouched in (True, False):
                assert_same(doc, mapping, sizes, vouched)


def test_good_documents_stay_on_the_fast_path() -> None:
    """Strings full of escapes, brackets and commas, records across pieces of any size:
    every cut is right, so msgspec takes every run and nothing goes to ijson."""
    rnd = random.Random(42)
    taken = 0
    for _ in range(40):
        doc, mapping = document(rnd, most=200, broken=False)
        if b"[" not in doc[:2] and mapping.get("format") != "ndjson":
            continue
        for size in (61, 4096, len(doc) or 1) if len(doc) > 2000 else (1, 3, len(doc) or 1):
            parser = json_records(mapping)
            for i in range(0, len(doc), size):
                parser.feed(doc[i:i + size])
            parser.close()
            assert parser.on_fast_path, (doc[:200], size)
            taken += 1
    assert taken > 50


@pytest.mark.parametrize("seed", range(3))
def test_the_fast_path_gives_what_ijson_gives_over_many_runs(seed: int) -> None:
    """Documents of thousands of records, fed in pieces of every size: many runs, records
    across pieces, escapes and long strings at the windows' edges."""
    rnd = random.Random(100 + seed)
    for _ in range(6):
        doc, mapping = document(rnd, most=3000)
        sizes = [rnd.choice([1, 7, 4096, 65536, 1 << 20]) for _ in range(200)]
        assert_same(doc, mapping, sizes)


# -- the cut


@pytest.mark.parametrize(("text", "depth", "in_string", "found"), [
    (b'[{"a": 1}, {"b": 2}', 1, False, (9, COMMA)),
    (b'[{"a": 1}, {"b": 2', 2, False, (9, COMMA)),
    (b'[{"a": ","}, "x, y', 1, True, (11, COMMA)),
    (b'[{"a": "\\","}, {"b', 2, True, (13, COMMA)),       # an escaped quote
    (b'[{"a": "\\\\"}, {"b', 2, True, (12, COMMA)),       # an escaped backslash
    (b'[{"a": "\\\\\\","}, {"', 2, True, (15, COMMA)),    # both
    (b'[1, 2]', 0, False, (5, CLOSE)),
    (b'[1, 2] ', 0, False, (5, CLOSE)),
    (b'[1, [2, 3]', 1, False, (2, COMMA)),
    (b'[{"a": [1, 2, {"b": 3}]}', 1, False, None),
    (b'[1}', 0, False, (2, WRONG)),
])
def test_the_last_cut(text: bytes, depth: int, in_string: bool,
                      found: tuple[int, int] | None) -> None:
    assert last_cut(bytearray(text), 1, depth, in_string) == found


def test_the_last_cut_looks_further_back_for_a_long_record() -> None:
    record = b'{"a": "' + b'\\"[' * 20000 + b'"}'
    buf = bytearray(b"[" + record + b", " + record + b", " + record[:-5])
    assert last_cut(buf, 1, 2, True) == (3 + 2 * len(record), COMMA)
    assert last_cut(buf, 4 + 2 * len(record), 2, True) is None  # none from `lo` on


# -- what the records say


def test_numbers_stay_as_written_on_both_paths() -> None:
    record = (b'{"id": 123456789012345678901234567890, "a": 1e2, "b": 1.0, "c": -0, "d": 0.10,'
              b' "e": 2.5E3, "f": 1e-7, "g": -0.0, "h": 1e999999, "i": 18446744073709551616,'
              b' "j": {"k": [1.50, 2e0]}}')
    names = ["id", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    mapping = {"fields": dict(zip(list(ATTRIBUTES)[:len(names)], names, strict=True))}
    expected = ["123456789012345678901234567890", "100", "1.0", "0", "0.10", "2500",
                "0.0000001", "-0.0", "1E+999999", "18446744073709551616", '{"k":[1.50,2]}']
    for doc in (b"[" + record + b"]", record + b"\n" + record + b"\n"):
        for fast in (True, False):
            result = outcome(doc, mapping, fast)
            assert not isinstance(result, Failure), result
            assert result[0][0] == expected


def test_what_msgspec_refuses_ijson_reads_on_from_there() -> None:
    """A lone surrogate in record 1500 (yajl takes it, msgspec does not): ijson reads the
    rest, and the rows are ijson's."""
    good = b'{"id": "r%d", "name": "n"}'
    records = [good % i for i in range(3000)]
    records[1499] = b'{"id": "\\ud800", "name": "n"}'
    for doc in (b"[" + b",\n".join(records) + b"]", b"\n".join(records)):
        mapping = {"fields": FIELDS}
        new = outcome(doc, mapping, True, [4096] * (len(doc) // 4096))
        assert new == outcome(doc, mapping, False)
        assert not isinstance(new, Failure)
        assert len(new[0]) == 3000
        assert new[0][1500][0] == "r1500"


def test_a_huge_record_is_read_whole() -> None:
    """Over RUN_CAP ijson reads on (and builds it as it goes); under it, msgspec takes it
    whole: either way the rows are those of ijson alone."""
    for size in (RUN_CAP // 4, RUN_CAP + 1024):
        huge = b'{"id": "big", "name": "' + b"n" * size + b'"}'
        doc = b'[{"id": "a"}, ' + huge + b', {"id": "z"}]'
        mapping = {"fields": {"externalId": "id"}}
        new = outcome(doc, mapping, True, [65536] * (len(doc) // 65536))
        assert new == outcome(doc, mapping, False)
        assert not isinstance(new, Failure)
        assert new[0] == [["a"], ["big"], ["z"]]


def test_malformed_far_into_a_document_names_the_byte_on_both_paths() -> None:
    good = b'{"id": "' + b"x" * 100 + b'"}'
    for doc, where in [
        (b"[" + b",\n".join([good] * 5000) + b', {"id": tru}]', b"tru}"),
        (b"[" + b",\n".join([good] * 5000) + b",, " + good + b"]", b", " + good + b"]"),
        (b"\n".join([good] * 5000) + b'\n{"id": 1} {"id": 2}\n', b' {"id": 2}'),
    ]:
        for fast in (True, False):
            result = outcome(doc, {"fields": FIELDS}, fast, [65536] * (len(doc) // 65536))
            assert isinstance(result, Failure)
            assert result.kind == "JsonSyntaxError"
            offset = int(re.findall(r"at byte (\d+)", result.message)[0])
            assert doc.index(where) <= offset <= doc.index(where) + 3, result


# -- memory


def _peak(doc: bytes, mapping: dict[str, Any]) -> int:
    parser = json_records(mapping)
    tracemalloc.start()
    try:
        for i in range(0, len(doc), 64 * 1024):
            parser.feed(doc[i:i + 64 * 1024])
        parser.close()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("ndjson", [False, True])
def test_memory_does_not_grow_with_the_records(ndjson: bool) -> None:
    def doc(n: int) -> bytes:
        records = [b'{"id": "%d", "q": %d, "p": 1.5}' % (k, k % 9) for k in range(n)]
        return b"\n".join(records) if ndjson else b"[" + b",\n".join(records) + b"]"

    mapping = {"fields": {"externalId": "id", "inventoryQuantity": "q"}}
    small, large = _peak(doc(5_000), mapping), _peak(doc(40_000), mapping)
    assert large < small * 1.5 + 256 * 1024, (small, large)
