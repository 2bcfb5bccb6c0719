"""parse_mapping: a feed's mapping JSON -> FeedMapping, or FeedError naming what is wrong.

Every check of a mapping is made here, once, when the feed is loaded; the parsers and the
mapper only check what needs the file (a CSV header's names and width).
"""

from __future__ import annotations

from typing import Any

import pytest

from worker.errors import FeedError
from worker.feedmapping import parse_mapping
from worker.model import ATTRIBUTES, FeedMapping

UNKNOWN = "mapping.fields names an unknown attribute 'stockLevel'"
VALUES = ("mapping.values.{} must map texts to values of a known attribute other than "
          "externalId")


def message(raw: Any, resource_type: str, header: bool = True) -> str:
    with pytest.raises(FeedError) as info:
        parse_mapping(raw, resource_type, header)
    return str(info.value)


# -- every format


@pytest.mark.parametrize("resource_type", ["ftp_csv", "xml", "json"])
@pytest.mark.parametrize("entry", [3, True, ["a.csv"], {}])
def test_zip_entry_must_be_a_file_name(resource_type: str, entry: Any) -> None:
    raw = {"zipEntry": entry, "record": "/r/i"}
    assert message(raw, resource_type) == "mapping.zipEntry must be the name of a file in the zip"


@pytest.mark.parametrize("raw", [None, [], "x", 3])
def test_a_mapping_that_is_not_an_object_is_empty(raw: Any) -> None:
    assert parse_mapping(raw, "ftp_csv") == FeedMapping()


@pytest.mark.parametrize(("resource_type", "raw"), [
    ("ftp_csv", {}), ("xml", {"record": "/r/i"}), ("json", {}),
])
@pytest.mark.parametrize(("values", "attr"), [
    ({"externalId": {"a": "b"}}, "externalId"),
    ({"stockLevel": {"a": "b"}}, "stockLevel"),
    ({"inventoryPolicy": ["deny"]}, "inventoryPolicy"),
])
def test_value_maps_of_known_attributes_other_than_external_id(
        resource_type: str, raw: dict[str, Any], values: dict[str, Any], attr: str) -> None:
    assert message({**raw, "values": values}, resource_type) == VALUES.format(attr)


@pytest.mark.parametrize(("resource_type", "raw"), [
    ("ftp_csv", {}), ("xml", {"record": "/r/i"}), ("json", {}),
])
def test_values_must_be_an_object(resource_type: str, raw: dict[str, Any]) -> None:
    assert message({**raw, "values": ["a"]}, resource_type) == "mapping.values must be an object"


def test_value_maps_are_kept_trimmed_lower_cased_and_as_text() -> None:
    raw = {"values": {"inventoryPolicy": {" In Stock ": "continue", "gone": None},
                      "options": {"m": {"size": "M"}}, "inventoryQuantity": {"lots": 99}}}
    assert parse_mapping(raw, "ftp_csv").values == {
        "inventoryPolicy": {"in stock": "continue", "gone": ""},
        "options": {"m": '{"size":"M"}'}, "inventoryQuantity": {"lots": "99"},
    }


# -- CSV


def test_csv_fields_must_be_an_object() -> None:
    assert message({"fields": ["id"]}, "ftp_csv") == "mapping.fields must be an object"


def test_csv_unknown_attribute() -> None:
    raw = {"fields": {"externalId": "id", "stockLevel": "qty"}}
    assert message(raw, "ftp_csv") == UNKNOWN


@pytest.mark.parametrize("src", [True, 1.5, None, ["a"]])
def test_csv_field_of_wrong_type(src: Any) -> None:
    assert message({"fields": {"externalId": "id", "retailPrice": src}}, "ftp_csv") == (
        "mapping.fields.retailPrice must be a column name or a 0-based index")


@pytest.mark.parametrize("header", [True, False])
def test_csv_negative_index(header: bool) -> None:
    assert message({"fields": {"externalId": -1}}, "ftp_csv", header) == (
        "mapping.fields.externalId: column index -1 is out of range")


def test_csv_column_name_without_header() -> None:
    assert message({"fields": {"externalId": "id"}}, "ftp_csv", header=False) == (
        "mapping.fields.externalId names column 'id' but the feed has no header row: "
        "use a 0-based index")


def test_csv_no_header_and_no_external_id() -> None:
    assert message({"fields": {"name": 1}}, "ftp_csv", header=False) == (
        "the feed has no header row: mapping.fields must give the 0-based column of "
        "externalId (and the other attributes)")


def test_csv_fields_as_written_with_a_header_by_index_without() -> None:
    raw = {"fields": {"externalId": "2", "name": 1, "vendorSku": "SKU"}, "zipEntry": "a.csv"}
    assert parse_mapping(raw, "ftp_csv").fields == {"externalId": "2", "name": 1,
                                                     "vendorSku": "SKU"}
    headless = {"fields": {"externalId": "2", "name": 1}}
    assert parse_mapping(headless, "ftp_csv", False).fields == {"externalId": 2, "name": 1}
    assert parse_mapping(raw, "ftp_csv").zip_entry == "a.csv"


def test_csv_header_names_are_checked_against_the_file() -> None:
    """Names a header may have: only the mapper, with the header, can tell."""
    raw = {"fields": {"externalId": "Item ID", "inventoryQuantity": "Stock"}}
    assert parse_mapping(raw, "ftp_csv").fields == raw["fields"]


# -- XML


@pytest.mark.parametrize(("raw", "expected"), [
    ({}, "mapping.record must be the absolute path of the record element, such as "
         '"/rss/channel/item"'),
    ({"record": "rss/channel/item"}, "mapping.record must be the absolute path"),
    ({"record": "//item"}, "mapping.record must be the absolute path"),
    ({"record": "/rss/g:item"}, "mapping.record: namespace prefix 'g' is not declared in "
                                "mapping.namespaces"),
    ({"record": "/r/i", "fields": {"externalId": "g:id"}},
     "mapping.fields.externalId: namespace prefix 'g' is not declared"),
    ({"record": "/r/i", "fields": {"stockLevel": "c"}}, UNKNOWN),
    ({"record": "/r/i", "fields": ["id"]}, "mapping.fields must be an object"),
    ({"record": "/r/i", "fields": {"externalId": "../id"}},
     "mapping.fields.externalId '../id': the path must stay inside the record element"),
    ({"record": "/r/i", "fields": {"externalId": "/r/id"}},
     "mapping.fields.externalId '/r/id': the path must stay inside the record element"),
    ({"record": "/r/i", "fields": {"externalId": "id["}},
     "mapping.fields.externalId 'id[' is not an XPath lxml can use"),
    ({"record": "/r/i", "fields": {"externalId": "$v"}},
     "mapping.fields.externalId '$v' is not an XPath lxml can use"),
    ({"record": "/r/i", "fields": {"externalId": 3}},
     "mapping.fields.externalId must be an XPath relative to the record element"),
    ({"record": "/r/i", "namespaces": ["g"]},
     "mapping.namespaces must map prefixes to namespace URIs"),
    ({"record": "/r/i", "fields": {"name": "n"}, "auto": False},
     "no column for externalId: map it in mapping.fields or name a column external_id "
     "(header: 'name')"),
])
def test_bad_xml_mappings(raw: dict[str, Any], expected: str) -> None:
    assert message(raw, "xml").startswith(expected)


def test_xml_mapping() -> None:
    raw = {"record": "/rss/channel/item", "namespaces": {"g": "http://base.google.com/ns/1.0"},
           "fields": {"externalId": "g:id", "name": "title"}}
    mapping = parse_mapping(raw, "xml")
    assert mapping.record == "/rss/channel/item"
    assert mapping.namespaces == raw["namespaces"]
    assert mapping.fields == {**{a: a for a in ATTRIBUTES}, **raw["fields"]}
    assert mapping.optional == frozenset(ATTRIBUTES) - {"externalId", "name"}
    assert parse_mapping({"record": "/r/i"}, "xml").fields == {a: a for a in ATTRIBUTES}
    assert parse_mapping({**raw, "auto": False}, "xml").fields == raw["fields"]


# -- JSON


@pytest.mark.parametrize(("raw", "expected"), [
    ({"record": "data..items"}, "mapping.record 'data..items' is not a dotted path (an empty "
                                "step)"),
    ({"record": 3}, 'mapping.record must be a dotted path such as "stock.available"'),
    ({"fields": {"stockLevel": "c"}}, UNKNOWN),
    ({"fields": {"externalId": ""}},
     'mapping.fields.externalId must be a dotted path such as "stock.available"'),
    ({"fields": ["id"]}, "mapping.fields must be an object"),
    ({"format": "csv"}, "mapping.format 'csv': use \"json\" or \"ndjson\""),
    ({"format": 3}, "mapping.format 3: use \"json\" or \"ndjson\""),
    ({"format": "ndjson", "record": "items"},
     "mapping.record does not apply to newline-delimited JSON"),
    ({"next": "links..next"}, "mapping.next 'links..next' is not a dotted path"),
    ({"fields": {"name": "n"}, "auto": False},
     "no column for externalId: map it in mapping.fields"),
])
def test_bad_json_mappings(raw: dict[str, Any], expected: str) -> None:
    assert message(raw, "json").startswith(expected)


def test_json_mapping() -> None:
    raw = {"record": " data.items ", "next": "links.next", "format": "JSON",
           "fields": {"externalId": "id", "inventoryQuantity": "stock.available"}}
    mapping = parse_mapping(raw, "json")
    assert (mapping.record, mapping.next, mapping.ndjson) == ("data.items", "links.next", False)
    assert mapping.fields == {**{a: a for a in ATTRIBUTES}, **raw["fields"]}
    assert parse_mapping({**raw, "auto": False}, "json").fields == raw["fields"]
    assert parse_mapping({"format": "jsonl"}, "json").ndjson
    assert parse_mapping({}, "json").fields == {a: a for a in ATTRIBUTES}


# -- a mapping the loader could not parse


def test_an_unusable_mapping_says_why_when_used() -> None:
    with pytest.raises(FeedError, match=r"^mapping\.fields must be an object$"):
        FeedMapping(error="mapping.fields must be an object").check()
    usable = FeedMapping()
    assert usable.check() is usable


# -- composing: the feed's own fields, a preset, the template names


@pytest.mark.parametrize("resource_type", ["ftp_csv", "xml", "json"])
@pytest.mark.parametrize("auto", [1, "no", None])
def test_auto_is_true_or_false(resource_type: str, auto: Any) -> None:
    raw = {"record": "/r/i", "auto": auto} if resource_type == "xml" else {"auto": auto}
    assert message(raw, resource_type) == "mapping.auto must be true or false"


def test_only_the_feeds_own_fields_are_required() -> None:
    csv = parse_mapping({"preset": "shopify", "fields": {"name": "Product"}}, "ftp_csv")
    assert csv.fields["name"] == "Product"
    assert csv.fields["inventoryQuantity"] == "Variant Inventory Qty"
    assert "name" not in csv.optional
    assert "inventoryQuantity" in csv.optional
    assert csv.preset == "shopify"
    assert csv.auto
    assert not parse_mapping({"fields": {"name": "P"}, "auto": False}, "ftp_csv").auto


@pytest.mark.parametrize(("raw", "resource_type", "expected"), [
    ({"preset": "magento"}, "ftp_csv", "mapping.preset 'magento' is not one of bigcommerce, "
                                       "google-merchant, shopify, woocommerce"),
    ({"preset": ["shopify"]}, "ftp_csv", "mapping.preset ['shopify'] is not one of"),
    ({"preset": "shopify"}, "xml", "mapping.preset 'shopify' reads resource_type ftp_csv or "
                                   "spreadsheet, not 'xml'"),
    ({"preset": "google-merchant"}, "json", "mapping.preset 'google-merchant' reads "
                                            "resource_type xml or ftp_csv or spreadsheet, "
                                            "not 'json'"),
    ({"preset": "google-merchant"}, "webhook", "mapping.preset 'google-merchant' reads "
                                               "resource_type xml or ftp_csv or spreadsheet, "
                                               "not 'webhook'"),
])
def test_unknown_or_misplaced_presets(raw: dict[str, Any], resource_type: str,
                                      expected: str) -> None:
    assert message(raw, resource_type).startswith(expected)


def test_a_preset_under_the_feeds_own_keys() -> None:
    mapping = parse_mapping({"preset": "google-merchant",
                             "fields": {"name": "g:custom_label_0"},
                             "values": {"inventoryPolicy": {"in stock": "track"}}}, "xml")
    assert mapping.record == "/rss/channel/item"
    assert mapping.namespaces == {"g": "http://base.google.com/ns/1.0"}
    assert mapping.fields["name"] == "g:custom_label_0"
    assert mapping.fields["externalId"] == "g:id"
    assert mapping.fields["grams"] == "grams"  # neither names it: the template name
    assert mapping.values["inventoryPolicy"] == {"in stock": "track"}  # the feed's map
    assert mapping.values["inventoryQuantity"]["out of stock"] == "0"  # the preset's
    assert mapping.optional == frozenset(mapping.fields) - {"name"}
    own = parse_mapping({"preset": "google-merchant", "record": "/feed/entry"}, "xml")
    assert own.record == "/feed/entry"


@pytest.mark.parametrize("name", ["shopify", "woocommerce", "bigcommerce", "google-merchant"])
def test_csv_presets_need_a_header_row(name: str) -> None:
    assert "but the feed has no header row" in message({"preset": name}, "ftp_csv", False)
