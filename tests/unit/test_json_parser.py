"""JsonRecords: JSON bytes -> the CSV parser's batches (rows in header order, record
numbers, records that are not objects), chunk by chunk, in flat memory."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterable
from typing import Any

import pytest

from tests.unit.recordhelp import json_records, parse_with, values_mapper
from worker.errors import FeedError
from worker.model import ATTRIBUTES
from worker.parsers import RecordBatch
from worker.parsers.json import JsonShapeError
from worker.parsers.jsonstream import MAX_DEPTH, JsonSyntaxError

FIELDS = {"externalId": "id", "inventoryQuantity": "stock.available", "name": "name",
          "retailPrice": "price", "options": "options", "images": "images.0"}

PAGE = b"""{
  "meta": {"page": 1, "items": "not these"},
  "data": {"count": 3, "items": [
    {"id": "A-1", "stock": {"available": 5}, "name": "Caf\\u00e9 \\"noir\\"",
     "price": 105.29, "options": {"size": "M", "weight": 1.50}, "images": ["a.jpg", "b.jpg"]},
    {"id": 2, "stock": {"available": null}, "name": true, "price": 1E+2, "options": []},
    {"id": "A-3", "stock": 7, "price": -0.5e-3, "extra": {"deep": [1, 2]}}
  ]},
  "links": {"self": "https://api.example/items?page=1", "next": "https://api.example/items?page=2"}
}"""
PAGE_MAPPING = {"record": "data.items", "next": "links.next", "fields": FIELDS}
PAGE_ROWS = [
    ["A-1", "5", 'Caf\u00e9 "noir"', "105.29", '{"size":"M","weight":1.50}', "a.jpg"],
    ["2", "", "true", "100", "[]", ""],
    ["A-3", "", "", "-0.0005", "", ""],
]


def parse(mapping: dict[str, Any], chunks: Iterable[bytes]) -> RecordBatch:
    """Every batch of a document fed as `chunks`, then close(), put together."""
    return parse_with(json_records, mapping, chunks)


def sized(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def failure(mapping: dict[str, Any], chunks: Iterable[bytes]) -> FeedError:
    with pytest.raises(FeedError) as info:
        parse(mapping, chunks)
    return info.value


def test_records_at_a_path_with_the_next_page() -> None:
    parser = json_records(PAGE_MAPPING)
    assert parser.header == list(FIELDS)
    batch = RecordBatch()
    for chunk in sized(PAGE, 100):
        batch.rows += parser.feed(chunk).rows
    batch.rows += parser.close().rows
    assert batch.rows == PAGE_ROWS
    assert parser.next_url == "https://api.example/items?page=2"


def test_every_split_and_every_chunk_size_give_the_same() -> None:
    whole = parse(PAGE_MAPPING, [PAGE])
    assert whole.rows == PAGE_ROWS
    assert list(whole.lines) == [1, 2, 3]
    for k in range(len(PAGE) + 1):
        assert parse(PAGE_MAPPING, [PAGE[:k], PAGE[k:]]) == whole, f"split at {k}"
    for size in (1, 2, 3, 7, 64):
        assert parse(PAGE_MAPPING, sized(PAGE, size)) == whole, f"chunks of {size}"


@pytest.mark.parametrize(("doc", "url"), [
    (b'{"links": {"next": "/p/2"}, "items": [{"id": 1}]}', "/p/2"),
    (b'{"items": [{"id": 1}], "links": {"next": null}}', None),
    (b'{"items": [{"id": 1}], "links": {}}', None),
    (b'{"items": [{"id": 1}]}', None),
])
def test_the_next_link_wherever_it_is(doc: bytes, url: str | None) -> None:
    for chunks in ([doc], sized(doc, 1)):
        parser = json_records({"record": "items", "next": "links.next", "fields": FIELDS})
        rows = [r for c in chunks for r in parser.feed(c).rows] + parser.close().rows
        assert rows == [["1", "", "", "", "", ""]]
        assert parser.next_url == url


def test_values_as_text() -> None:
    doc = (b'[{"s": " a\\tb ", "i": -12, "big": 123456789012345678901234567890, "d": 0.10,'
           b' "e": 2.5E3, "tiny": 1e-7, "t": true, "f": false, "n": null,'
           b' "o": {"k": [1, 2.50, null, "x"]}, "a": [], "huge": 1e999999}]')
    names = ["s", "i", "big", "d", "e", "tiny", "t", "f", "n", "o", "a", "huge", "missing"]
    attrs = list(ATTRIBUTES)[:len(names)]
    mapping = {"fields": dict(zip(attrs, names, strict=True))}
    [row] = parse(mapping, [doc]).rows
    assert dict(zip(names, row, strict=True)) == {
        "s": " a\tb ", "i": "-12", "big": "123456789012345678901234567890", "d": "0.10",
        "e": "2500", "tiny": "0.0000001", "t": "true", "f": "false", "n": "",
        "o": '{"k":[1,2.50,null,"x"]}', "a": "[]", "huge": "1E+999999", "missing": "",
    }


def test_the_mapper_takes_the_rows_unchanged() -> None:
    doc = b'[{"id": "A1", "qty": 5, "sku": " S-1 "}, {"id": "A2", "qty": 0}]'
    mapping = {"fields": {"externalId": "id", "inventoryQuantity": "qty", "vendorSku": "sku"}}
    parser = json_records(mapping)
    batch = parse(mapping, [doc])
    mapper = values_mapper(parser.header)
    mapped = mapper.map(batch.rows, batch.lines)
    assert mapped.rejects == []
    assert mapped.count == 2
    assert {"external_id", "inventory_quantity", "vendor_sku"} <= set(mapper.columns)


def test_without_fields_the_reference_attribute_names() -> None:
    parser = json_records({})
    assert parser.header == list(ATTRIBUTES)
    batch = parse({}, [b'[{"externalId": "1", "inventoryQuantity": 3, "color": "red"}]'])
    row = dict(zip(ATTRIBUTES, batch.rows[0], strict=True))
    assert (row["externalId"], row["inventoryQuantity"], row["name"]) == ("1", "3", "")


def test_a_record_that_is_not_an_object_is_an_error_and_the_rest_go_on() -> None:
    doc = b'[{"id": 1}, 2, "three", [4], null, {"id": "a\\u0000b"}, {"id": 7}]'
    for chunks in ([doc], sized(doc, 1)):
        batch = parse({"fields": {"externalId": "id"}}, chunks)
        assert batch.rows == [["1"], ["7"]]
        assert list(batch.lines) == [1, 7]
        assert [(n, raw) for n, raw, _ in batch.errors] == [
            (2, "2"), (3, '"three"'), (4, "[4]"), (5, "null"), (6, '{"id":"a\\u0000b"}')]
        assert "record 3 is a string, not an object" in batch.errors[1][2]
        assert "NUL" in batch.errors[4][2]


def test_top_level_array_and_utf8_bom() -> None:
    doc = b'\xef\xbb\xbf  [{"id": "\xc3\xa9"}]  \n'
    for chunks in ([doc], sized(doc, 1)):
        assert parse({"fields": {"externalId": "id"}}, chunks).rows == [["\u00e9"]]


def test_an_empty_array_is_no_records() -> None:
    assert parse(PAGE_MAPPING, [b'{"data": {"items": []}}']).rows == []
    assert parse({}, [b"[]"]).rows == []


@pytest.mark.parametrize(("mapping", "doc", "message"), [
    ({"record": "data.items"}, b'{"data": {"items": {"id": 1}}}', "is an object, not an array"),
    ({"record": "data.items"}, b'{"data": {"items": "x"}}', "is a string, not an array"),
    ({"record": "data.items"}, b'{"data": {}}', "no array at 'data.items'"),
    ({"record": "data.items"}, b'[{"id": 1}]', "no array at 'data.items'"),
    ({}, b'{"data": [{"id": 1}]}', "is an object, not an array of records: set mapping.record"),
    ({}, b'"just text"', "is a string, not an array"),
    ({}, b" 42 ", "is a number, not an array"),
    ({}, b"null", "is null, not an array"),
])
def test_json_that_is_not_records_where_the_mapping_says(mapping: dict[str, Any], doc: bytes,
                                                          message: str) -> None:
    for chunks in ([doc], sized(doc, 1)):
        error = failure({**mapping, "fields": {"externalId": "id"}}, chunks)
        assert isinstance(error, JsonShapeError)
        assert message in str(error)


@pytest.mark.parametrize(("doc", "offset", "reason"), [
    # yajl's offset: where it stopped, at or just past the byte it could not take
    (b'[{"id": 1},\n {"id": 2,}]', 23, "invalid object key"),
    (b'[{"id": 1}, {"id": x}]', 20, "invalid char"),
    (b'[{"id": 1}', 10, "premature EOF"),
    (b'[{"id": 1}] [', 13, "trailing garbage"),
    (b'[{"id": 1},\n ' + b"[" * (MAX_DEPTH + 5), 13 + MAX_DEPTH - 1, "nested more than"),
    (b'[{"id": 1},\x0c{"id": 2}]', 11, "0x0c"),
    (b'[{"id": "a\x00"}]', 10, "0x00"),
    (b'[{"id": "\xff"}]', 10, "UTF8"),
    (b"", 0, "empty"),
    (b"  \n ", 4, "empty"),
])
def test_malformed_json_names_the_byte(doc: bytes, offset: int, reason: str) -> None:
    for chunks in ([doc], sized(doc, 1), sized(doc, 7)):
        error = failure({"fields": {"externalId": "id"}}, chunks)
        assert isinstance(error, JsonSyntaxError)
        assert error.offset == offset, str(error)
        assert f"at byte {offset}" in str(error)
        assert reason in str(error)


def test_the_offset_is_found_far_into_the_document() -> None:
    good = b'{"id": "' + b"x" * 100 + b'"},\n'
    doc = b"[" + good * 3000 + b'{"id": tru}]'
    where = doc.index(b"tru}") + 3
    for chunks in ([doc], sized(doc, 4096), sized(doc, 65536)):
        error = failure({"fields": {"externalId": "id"}}, chunks)
        assert isinstance(error, JsonSyntaxError)
        assert error.offset == where, str(error)


def test_deep_nesting_fails_fast_in_little_memory() -> None:
    doc = b"[" * 1_000_000
    tracemalloc.start()
    t = time.perf_counter()
    try:
        error = failure({}, sized(doc, 65536))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t < 1
    assert peak < 4 * 1024 * 1024
    assert f"nested more than {MAX_DEPTH} levels" in str(error)


def test_brackets_and_escapes_in_strings_are_not_nesting() -> None:
    text = b'"' + b"[{" * 2000 + b'\\"\\\\[ ]' + b'"'
    doc = b'[{"id": ' + text + b"}]"
    for chunks in ([doc], sized(doc, 1), sized(doc, 3)):
        [[value]] = parse({"fields": {"externalId": "id"}}, chunks).rows
        assert value == "[{" * 2000 + '"\\[ ]'


def test_a_failed_parser_stays_failed() -> None:
    parser = json_records({})
    with pytest.raises(JsonSyntaxError):
        parser.feed(b"[1, x]")
    with pytest.raises(JsonSyntaxError):
        parser.feed(b"[]")
    with pytest.raises(JsonSyntaxError):
        parser.close()


# -- newline-delimited JSON

NDJSON = (b'{"id": 1, "stock": {"available": 3}}\n'
          b'{"id": "2", "name": "two"}\r\n'
          b"\n"
          b"   \n"
          b'"not an object"\n'
          b'{"id": 4}')


def test_ndjson_is_detected() -> None:
    expected = [["1", "3", "", "", "", ""], ["2", "", "two", "", "", ""],
                ["4", "", "", "", "", ""]]
    whole = parse({"fields": FIELDS}, [NDJSON])
    assert whole.rows == expected
    assert list(whole.lines) == [1, 2, 4]
    assert [e[:2] for e in whole.errors] == [(3, '"not an object"')]
    for k in range(len(NDJSON) + 1):
        assert parse({"fields": FIELDS}, [NDJSON[:k], NDJSON[k:]]) == whole, f"split at {k}"
    assert parse({"fields": FIELDS, "format": "ndjson"}, sized(NDJSON, 1)) == whole


def test_one_object_is_not_ndjson_unless_the_mapping_says() -> None:
    for doc in (b'{"id": 1}', b'{"id": 1}\n', b'{\n  "id": 1\n}\n'):
        error = failure({"fields": FIELDS}, [doc])
        assert isinstance(error, JsonShapeError)
    batch = parse({"fields": FIELDS, "format": "ndjson"}, [b'{"id": 1}\n'])
    assert batch.rows == [["1", "", "", "", "", ""]]


@pytest.mark.parametrize(("doc", "fmt", "offset", "line"), [
    (b'{"a": true} "x"', "", 15, None),                      # two values on one line
    (b'{"id": 1}\n{"id": 2} {"id": 3}\n', "", 11, None),     # ... not lines: one document
    (b'{"id": 1}\n{"id": 2} {"id": 3}\n', "ndjson", 20, 2),
    (b'{"id": 1}\n{"id":\n 2}\n', "ndjson", 16, 2),
    (b'{"id": 1}\n{"id": 2}\n{"id": x}\n', "ndjson", 28, 3),
    (b'{"id": 1}\n{"id": 2}\n{"id": 3', "ndjson", 28, 3),
])
def test_malformed_ndjson(doc: bytes, fmt: str, offset: int, line: int | None) -> None:
    for chunks in ([doc], sized(doc, 1)):
        error = failure({"fields": FIELDS, "format": fmt}, chunks)
        assert isinstance(error, JsonSyntaxError)
        assert error.offset == offset, str(error)
        if line is not None:
            assert f"(line {line})" in str(error)


# -- memory


def _peak(n: int) -> int:
    records = b",\n".join(b'{"id": "%d", "q": %d, "p": 1.5}' % (k, k % 9) for k in range(n))
    chunks = sized(b'{"items": [' + records + b"]}", 64 * 1024)
    parser = json_records({"record": "items",
                          "fields": {"externalId": "id", "inventoryQuantity": "q"}})
    tracemalloc.start()
    try:
        for chunk in chunks:
            parser.feed(chunk)
        parser.close()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_records() -> None:
    small, large = _peak(5_000), _peak(20_000)
    assert large < small * 1.5 + 256 * 1024, (small, large)
