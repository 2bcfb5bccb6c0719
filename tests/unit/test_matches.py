"""matches.judge: what a pull's per-attribute counts mean for its run; the mask without the
attributes no record had; warnings in the run-completed event."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from tests.unit.recordhelp import csv_mapper
from worker.feedmapping import parse_mapping
from worker.mapping import Mapper
from worker.messages import encode_run_completed
from worker.model import COLUMN_BIT, FeedMapping
from worker.pipeline.matches import judge, no_records

SCHEMA = orjson.loads((Path(__file__).resolve().parents[2] / "schemas"
                       / "run-completed.schema.json").read_bytes())
G = {"g": "http://base.google.com/ns/1.0"}


def xml(fields: dict[str, str], **more: Any) -> FeedMapping:
    return parse_mapping({"record": "/rss/channel/item", "namespaces": G, "fields": fields,
                          **more}, "xml")


def test_an_own_path_that_matched_nothing_is_an_error_with_a_hint() -> None:
    mapping = xml({"externalId": "g:id", "name": "title"})
    verdict = judge(mapping, "xml", {"externalId": 5, "name": 0}, 5, 0.5)
    assert verdict.errors == [
        "name (XPath 'title') matched no record of 5: names without a prefix are in no "
        "namespace; elements of a namespaced feed need theirs (g:, e.g. g:title)"]
    plain = parse_mapping({"record": "/r/i", "fields": {"externalId": "id", "name": "Name"}},
                          "xml")
    [error] = judge(plain, "xml", {"externalId": 5, "name": 0}, 5, 0.5).errors
    assert error.endswith("the XPath is relative to the record element and case-sensitive; "
                          "check it against a record of the file")
    js = parse_mapping({"fields": {"externalId": "id", "inventoryQuantity": "stok"}}, "json")
    [error] = judge(js, "json", {"externalId": 3, "inventoryQuantity": 0}, 3, 0.5).errors
    assert error.startswith("inventoryQuantity (path 'stok') matched no record of 3: keys are "
                            "case-sensitive")


def test_few_matches_are_a_warning_and_the_share_is_a_setting() -> None:
    mapping = xml({"externalId": "g:id", "name": "g:title"})
    verdict = judge(mapping, "xml", {"externalId": 10, "name": 4}, 10, 0.5)
    assert verdict.errors == []
    assert verdict.warnings == ["name (XPath 'g:title') has a value in only 4 of 10 records "
                                "(40%; FEED_WORKER_MIN_ATTRIBUTE_MATCH_SHARE is 0.5)"]
    assert judge(mapping, "xml", {"externalId": 10, "name": 5}, 10, 0.5).warnings == []
    assert judge(mapping, "xml", {"externalId": 10, "name": 4}, 10, 0.4).warnings == []
    assert judge(mapping, "xml", {"externalId": 10, "name": 1}, 10, 0.0).warnings == []


def test_a_blank_csv_column_is_a_warning_not_an_error() -> None:
    mapping = parse_mapping({"fields": {"compareAtPrice": "Was"}}, "ftp_csv")
    verdict = judge(mapping, "ftp_csv", {"externalId": 4, "compareAtPrice": 0}, 4, 0.5)
    assert verdict.errors == []
    assert verdict.warnings == ["compareAtPrice (column 'Was') is blank in all 4 records"]
    assert verdict.unwritten == set()  # the column is in the file: its blanks are written


def test_what_a_preset_or_the_template_maps_is_not_judged_only_left_out() -> None:
    mapping = parse_mapping({"preset": "google-merchant"}, "xml")
    counts = dict.fromkeys(mapping.fields, 0) | {"externalId": 8, "name": 8, "mpn": 1}
    verdict = judge(mapping, "xml", counts, 8, 0.5)
    assert (verdict.errors, verdict.warnings) == ([], [])
    assert "compareAtPrice" in verdict.unwritten
    assert "grams" in verdict.unwritten  # a template name
    assert not {"externalId", "name", "mpn"} & verdict.unwritten


def test_no_records_is_nothing_to_judge() -> None:
    mapping = xml({"externalId": "g:id"})
    verdict = judge(mapping, "xml", {"externalId": 0}, 0, 0.5)
    assert (verdict.errors, verdict.warnings, verdict.unwritten) == ([], [], set())


def test_why_no_records() -> None:
    assert no_records(xml({"externalId": "g:id"}), "xml") == (
        "no records at /rss/channel/item (mapping.record): no element has that path from "
        "the root")
    assert no_records(parse_mapping({"record": "data.items"}, "json"), "json").startswith(
        "no records at data.items (mapping.record)")
    assert no_records(parse_mapping({}, "json"), "json") == (
        "no records at the document's top level: set mapping.record to the array's path")
    assert no_records(parse_mapping({"format": "ndjson"}, "json"), "json").startswith(
        "no records: the newline-delimited JSON has no lines")


def test_the_mask_leaves_out_what_no_record_had() -> None:
    m = Mapper(FeedMapping(), ["externalId", "name", "retailPrice", "description", "currency"])
    assert m.mask_without([]) == m.mask
    without_name = m.mask_without(["name"])
    assert without_name == m.mask & ~COLUMN_BIT["name"]
    # the prices' codes fill the currency: it stays while a price is written
    assert m.mask_without(["currency"]) & COLUMN_BIT["currency"]
    gone = m.mask_without(["currency", "retailPrice", "description"])
    assert not gone & (COLUMN_BIT["currency"] | COLUMN_BIT["retail_price"]
                       | COLUMN_BIT["extra"])


def test_a_price_code_fills_a_blank_currency_column() -> None:
    m = csv_mapper({}, ["external_id", "retail_price", "currency"])
    batch = m.map([["a", "9.99 USD", ""], ["b", "1.00 USD", "EUR"], ["c", "2", ""]],
                  [2, 3, 4])
    assert batch.text.splitlines() == ["a\t9.99\tUSD", "b\t1.00\tEUR", "c\t2\t"]


def test_warnings_and_matches_in_the_run_completed_event() -> None:
    run = {"id": 1, "inventory_feed_id": 2, "kind": "pull", "status": "succeeded",
           "started_at": datetime(2026, 1, 1, tzinfo=UTC), "rows_read": 3, "inserted": 3,
           "updated": 0, "unchanged": 0, "rejected": 0, "duplicates": 0, "bytes": 10,
           "timings": "{}",
           "details": orjson.dumps({"matched": {"name": 1},
                                   "warnings": ["few names"],
                                   "file": "sftp://acme:***@h/out/s_20260101.csv"}).decode()}
    event = orjson.loads(encode_run_completed(run))
    jsonschema.Draft202012Validator(SCHEMA).validate(event)
    assert (event["warnings"], event["matched"]) == (["few names"], {"name": 1})
    assert event["file"] == "sftp://acme:***@h/out/s_20260101.csv"
    bare = orjson.loads(encode_run_completed({**run, "details": "{}"}))
    jsonschema.Draft202012Validator(SCHEMA).validate(bare)
    assert (bare["warnings"], bare["matched"], bare["file"]) == ([], None, None)
