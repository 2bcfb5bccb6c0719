"""The field size cap (FEED_WORKER_MAX_FIELD_CHARS) and the NUL counts, for every format:
a record with a field over the cap is a reject naming the field, the rest go on; the
counts reach the details the pipeline merges into the run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.unit.recordhelp import json_records, make_feed, xml_records
from worker.errors import ConfigError, FeedError
from worker.model import DEFAULT_MAX_FIELD_CHARS
from worker.parsers import RecordBatch
from worker.pipeline import formats
from worker.settings import Settings

CAP = 10
XML_MAPPING = {"record": "/r/i", "fields": {"externalId": "id", "name": "n"}, "auto": False}
JSON_MAPPING = {"record": "items", "fields": {"externalId": "id", "name": "d.n"},
                "auto": False}




def drain(records: formats.Records, chunks: list[bytes]) -> RecordBatch:
    out = RecordBatch(lines=[])
    assert isinstance(out.lines, list)
    for batch in [*(records.feed(c) for c in chunks), records.close()]:
        out.rows += batch.rows
        out.lines += batch.lines
        out.errors += batch.errors
    return out


def xml_doc(names: list[str]) -> bytes:
    items = "".join(f"<i><id>X{k}</id><n>{n}</n></i>" for k, n in enumerate(names, 1))
    return f"<r>{items}</r>".encode()


def json_doc(names: list[str]) -> bytes:
    items = [{"id": f"J{k}", "d": {"n": n}} for k, n in enumerate(names, 1)]
    return orjson.dumps({"items": items})


def test_the_setting_defaults_to_the_parsers_cap_and_is_checked() -> None:
    assert Settings().max_field_chars == DEFAULT_MAX_FIELD_CHARS == 131072
    env = {"FEED_WORKER_MAX_FIELD_CHARS": "4096"}
    assert Settings.from_env(env).max_field_chars == 4096
    for bad in ("0", str((1 << 30) + 1)):
        with pytest.raises(ConfigError, match="FEED_WORKER_MAX_FIELD_CHARS"):
            Settings.from_env({"FEED_WORKER_MAX_FIELD_CHARS": bad})
    with pytest.raises(ConfigError):
        replace(Settings(), max_field_chars=-1).validate()


def test_xml_field_over_the_cap_is_a_reject() -> None:
    parser = xml_records(XML_MAPPING, max_field_chars=CAP)
    got = drain(formats._Structured(parser), [xml_doc(["short", "x" * 11, "y" * 10])])
    assert got.rows == [["X1", "short"], ["X3", "y" * 10]]
    assert got.lines == [1, 3]
    [(n, raw, reason)] = got.errors
    assert n == 2
    assert raw.startswith("<i><id>X2</id>")
    assert reason == ("name is 11 characters long, over the 10-character cap "
                      "(FEED_WORKER_MAX_FIELD_CHARS)")


@pytest.mark.parametrize("size", [1, 7, 1 << 20])
def test_json_field_over_the_cap_is_a_reject(size: int) -> None:
    doc = json_doc(["short", "x" * 11, "y" * 10])
    records = formats.records_for(make_feed("json", JSON_MAPPING), max_field_chars=CAP)
    got = drain(records, [doc[i:i + size] for i in range(0, len(doc), size)])
    assert got.rows == [["J1", "short"], ["J3", "y" * 10]]
    assert got.lines == [1, 3]
    [(n, raw, reason)] = got.errors
    assert n == 2
    assert orjson.loads(raw) == {"id": "J2", "d": {"n": "x" * 11}}
    assert reason.startswith("name is 11 characters long, over the 10-character cap")


def test_json_cap_counts_nested_values_as_their_text() -> None:
    parser = json_records({"fields": {"externalId": "id", "options": "o"}}, max_field_chars=CAP)
    doc = orjson.dumps([{"id": "A", "o": [1, 2]}, {"id": "B", "o": {"size": "XL"}}])
    got = drain(formats._Structured(parser), [doc])
    assert got.rows == [["A", "[1,2]"]]
    assert "options is 13 characters long" in got.errors[0][2]


@pytest.mark.parametrize("resource_type", ["ftp_csv", "spreadsheet", "xml", "json"])
def test_records_for_passes_the_cap_on(resource_type: str) -> None:
    mapping = {"ftp_csv": {}, "spreadsheet": {}, "xml": XML_MAPPING,
               "json": JSON_MAPPING}[resource_type]
    feed = make_feed(resource_type, mapping)
    assert _cap_of(formats.records_for(feed)) == DEFAULT_MAX_FIELD_CHARS
    assert _cap_of(formats.records_for(feed, 77)) == 77


def _cap_of(records: formats.Records) -> int:
    inner: Any = getattr(records, "_parser", None)
    if hasattr(records, "max_field_chars"):  # CSV (or a spreadsheet), spreadsheet
        return int(records.max_field_chars)
    return int(inner.max_field_chars)


def test_csv_records_reject_a_long_field_and_count_nul_lines() -> None:
    records = formats.records_for(make_feed("ftp_csv"), max_field_chars=CAP)
    got = drain(records, [b"id,name\nA,ok\nB,", b"x" * 11 + b"\nC,\x00\nD,fine\n\x00\n"])
    assert records.header == ["id", "name"]
    assert got.rows == [["A", "ok"], ["D", "fine"]]
    assert [(line, reason.split(" ")[0]) for line, _, reason in got.errors] == [
        (3, "field"), (4, "the"), (6, "the")]
    assert records.details["nul_lines"] == 2


def test_csv_without_nul_has_no_nul_count() -> None:
    records = formats.records_for(make_feed("ftp_csv"))
    drain(records, [b"external_id,name\nA,ok\n"])
    assert "nul_lines" not in records.details


@pytest.mark.parametrize("body", [b"id,na\x00me\nA,1\n",
                                  b"id,name_" + b"x" * 20 + b"\nA,1\n",
                                  b'\n\nid,"name\nA,1\n' + b"B,2\n" * 30])
def test_an_unreadable_header_fails_the_run(body: bytes) -> None:
    records = formats.records_for(make_feed("ftp_csv"), max_field_chars=CAP)
    with pytest.raises(FeedError, match=r"header row .* cannot be read"):
        drain(records, [body])


def test_json_nul_records_reach_the_details() -> None:
    records = formats.records_for(make_feed("json", {"fields": {"externalId": "id"},
                                                     "auto": False}))
    got = drain(records, [b'[{"id": "a\\u0000"}, {"id": "b"}, {"id": "\\u0000c"}]'])
    assert got.rows == [["b"]]
    assert records.details["nul_records"] == 2


def test_ndjson_format_reaches_the_details() -> None:
    records = formats.records_for(make_feed("json", {"fields": {"externalId": "id"}}))
    drain(records, [b'{"id": "a"}\n{"id": "b"}\n'])
    assert records.details["format"] == "ndjson"
