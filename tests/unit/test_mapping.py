"""Mapper: header + mapping -> which columns feed which attributes; records -> rows/rejects.

The mapper writes COPY text (tab-separated, backslash escapes, blank = no value); decode()
reads it back, and ext_first() puts it as [external_id, *the other columns], in the order
of the records (staging numbers them as they arrive).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from tests.unit.recordhelp import csv_mapper
from worker.errors import FeedError
from worker.mapping import MappedBatch, Mapper, Reject
from worker.model import COLUMN_BIT, COLUMNS, EXTRA_ATTRIBUTES

_UNESCAPE = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def _field(text: str) -> str | None:
    """One COPY text value; empty and \\N both mean no value (the merge reads '' as NULL)."""
    if text in ("", "\\N"):
        return None
    return re.sub(r"\\[\\tnr]", lambda m: _UNESCAPE[m.group()], text)


def decode(batch: MappedBatch) -> list[list[str | None]]:
    """COPY text -> rows of values, in the order of Mapper.columns."""
    if not batch.text:
        assert batch.count == 0
        return []
    assert batch.text.endswith("\n")
    rows = [[_field(f) for f in line.split("\t")] for line in batch.text[:-1].split("\n")]
    assert len(rows) == batch.count
    return rows


def implicit_currency(mapper: Mapper) -> bool:
    """The currency column the mapper adds after the file's prices (see test_currency_*)."""
    return bool(mapper.columns) and mapper.columns[-1] == "currency" and \
        "currency" not in mapper.source


def others(mapper: Mapper) -> list[str]:
    """Mapper.columns (COPY's column list, in file order) without external_id (and without
    the implicit currency column)."""
    cut = -1 if implicit_currency(mapper) else None
    return [c for c in mapper.columns[:cut] if c != "external_id"]


def ext_first(mapper: Mapper, rows: list[list[Any]]) -> list[list[Any]]:
    """Rows as [external_id, *others(mapper)], whatever the file's column order."""
    i = mapper.columns.index("external_id")
    if implicit_currency(mapper):
        rows = [r[:-1] for r in rows]
    return [[r[i], *r[:i], *r[i + 1:]] for r in rows]


def one(mapper: Mapper, row: list[str], line: int = 2) -> tuple[list[list[Any]], list[Reject]]:
    batch = mapper.map([row], [line])
    return ext_first(mapper, decode(batch)), batch.rejects


def good(mapper: Mapper, row: list[str], line: int = 2) -> list[Any]:
    rows, rejects = one(mapper, row, line)
    assert rejects == []
    assert len(rows) == 1
    assert len(rows[0]) == len(mapper.columns) - implicit_currency(mapper)
    return rows[0]


def reject(mapper: Mapper, row: list[str], line: int = 2) -> Reject:
    rows, rejects = one(mapper, row, line)
    assert rows == []
    assert len(rejects) == 1
    return rejects[0]


def many(mapper: Mapper, rows: list[list[str]], lines: list[int]) -> tuple[list[list[Any]],
                                                                           list[Reject]]:
    batch = mapper.map(rows, lines)
    return ext_first(mapper, decode(batch)), batch.rejects


def value_of(mapper: Mapper, row: list[str], column: str) -> Any:
    """The value the mapper writes for one staging column."""
    return good(mapper, row)[1 + others(mapper).index(column)]


# -- which column is which ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["external_id", "externalId", "External ID", "EXTERNAL-ID",
                                  "external.id", " External_Id "])
def test_external_id_found_by_template_name(name: str) -> None:
    m = csv_mapper({}, ["x", name])
    assert m.ext_index == 1
    assert good(m, ["a", " E1 "]) == ["E1"]


@pytest.mark.parametrize(
    ("name", "attr", "column"),
    [
        ("vendor_sku", "vendorSku", "vendor_sku"),
        ("Vendor SKU", "vendorSku", "vendor_sku"),
        ("sku", "vendorSku", "vendor_sku"),
        ("qty", "inventoryQuantity", "inventory_quantity"),
        ("QTY", "inventoryQuantity", "inventory_quantity"),
        ("quantity", "inventoryQuantity", "inventory_quantity"),
        ("inventory_quantity", "inventoryQuantity", "inventory_quantity"),
        ("Inventory Quantity", "inventoryQuantity", "inventory_quantity"),
        ("retail_price", "retailPrice", "retail_price"),
        ("Retail Price", "retailPrice", "retail_price"),
        ("compare_at_price", "compareAtPrice", "compare_at_price"),
        ("title", "name", "name"),
        ("inventory-policy", "inventoryPolicy", "inventory_policy"),
        ("external_group_id", "externalGroupId", "external_group_id"),
    ],
)
def test_attribute_found_by_template_name(name: str, attr: str, column: str) -> None:
    m = csv_mapper({}, ["external_id", name])
    assert m.source == {"externalId": 0, attr: 1}
    assert others(m) == [column]
    currency = COLUMN_BIT["currency"] if implicit_currency(m) else 0
    assert m.mask == COLUMN_BIT[column] | currency


def test_unknown_header_names_are_ignored() -> None:
    m = csv_mapper({}, ["external_id", "colour", "warehouse"])
    assert m.source == {"externalId": 0}
    assert others(m) == []
    assert m.mask == 0
    assert good(m, ["E1", "red", "north"]) == ["E1"]


def test_first_of_two_matching_columns_wins() -> None:
    m = csv_mapper({}, ["external_id", "qty", "quantity"])
    assert m.source == {"externalId": 0, "inventoryQuantity": 1}


def test_explicit_field_by_header_name() -> None:
    m = csv_mapper({"fields": {"externalId": "Item", "inventoryQuantity": "Stock Level"}},
               ["Item", "Stock Level", "qty"])
    assert m.source == {"externalId": 0, "inventoryQuantity": 1}
    assert good(m, ["E1", "5", "99"]) == ["E1", "5"]


def test_explicit_field_by_header_name_any_case() -> None:
    m = csv_mapper({"fields": {"externalId": "item code", "retailPrice": " PRICE "}},
               ["Item Code", "Price"])
    assert m.source == {"externalId": 0, "retailPrice": 1}


def test_explicit_field_leaves_the_template_names_of_the_others() -> None:
    """Naming one attribute keeps the others' template names: a column may serve two
    (`externalId: "sku"` and vendorSku by its name, for auto-connect by SKU)."""
    m = csv_mapper({"fields": {"externalId": "sku"}}, ["sku", "qty"])
    assert m.source == {"externalId": 0, "vendorSku": 0, "inventoryQuantity": 1}
    assert good(m, ["A1", "4"], line=1) == ["A1", "A1", "4"]


def test_auto_false_maps_only_the_fields() -> None:
    m = csv_mapper({"fields": {"externalId": "sku"}, "auto": False}, ["sku", "qty"])
    assert m.source == {"externalId": 0}
    assert m.columns == ["external_id"]


def test_a_preset_column_the_header_lacks_is_left_out() -> None:
    m = csv_mapper({"preset": "woocommerce"}, ["SKU", "Name", "Stock"])
    assert m.source == {"externalId": 0, "vendorSku": 0, "name": 1, "inventoryQuantity": 2}
    with pytest.raises(FeedError, match=r"^mapped column 'Price' \(retailPrice\) is not in"):
        csv_mapper({"preset": "woocommerce", "fields": {"retailPrice": "Price"}},
                   ["SKU", "Name", "Stock"])


def test_matches_are_counted_per_attribute() -> None:
    m = csv_mapper({}, ["external_id", "qty", "name", "description"])
    m.map([["a", "1", "", "x"], ["b", "", "", ""], ["c", "3", "", "y"]], [1, 2, 3])
    m.map([["d", "", "", ""]], [4])
    assert m.records == 4
    assert m.matched == {"externalId": 4, "inventoryQuantity": 2, "name": 0, "description": 2}


def test_explicit_field_by_index_without_header() -> None:
    m = csv_mapper({"fields": {"externalId": 2, "inventoryQuantity": "0", "name": 1}}, None)
    assert m.width is None
    assert m.source == {"externalId": 2, "inventoryQuantity": 0, "name": 1}
    assert good(m, ["7", "Lamp", "E9"], line=1) == ["E9", "7", "Lamp"]


def test_explicit_field_by_index_with_header() -> None:
    m = csv_mapper({"fields": {"externalId": 1}}, ["a", "b"])
    assert m.ext_index == 1


def test_explicit_index_beyond_the_header() -> None:
    with pytest.raises(FeedError, match="column index 2 is out of range"):
        csv_mapper({"fields": {"externalId": 2}}, ["a", "b"])


def test_mapped_column_missing_from_header_names_it() -> None:
    with pytest.raises(FeedError) as info:
        csv_mapper({"fields": {"externalId": "id", "inventoryQuantity": "Stock Level"}},
               ["id", "stock"])
    assert "'Stock Level'" in str(info.value)
    assert "inventoryQuantity" in str(info.value)


def test_no_external_id_column() -> None:
    with pytest.raises(FeedError, match="externalId") as info:
        csv_mapper({}, ["sku", "qty"])
    assert "'sku'" in str(info.value)  # the header is shown


# -- records ------------------------------------------------------------------------------

def test_row_layout_is_position_external_id_then_columns() -> None:
    m = csv_mapper({}, ["qty", "external_id", "name", "retail_price"])
    assert others(m) == ["inventory_quantity", "name", "retail_price"]
    assert good(m, ["3", "E1", "Lamp", "9.50"], line=7) == ["E1", "3", "Lamp", "9.50"]


@pytest.mark.parametrize(("row", "found"), [(["E1", "3"], 2), (["E1", "3", "x", "y"], 4),
                                            (["E1"], 1), ([" "], 1)])
def test_wrong_column_count_is_rejected(row: list[str], found: int) -> None:
    m = csv_mapper({}, ["external_id", "qty", "name"])
    r = reject(m, row, line=12)
    assert r == Reject(12, ",".join(row), f"expected 3 columns, found {found}")


def test_record_of_one_empty_field_is_rejected_not_dropped() -> None:
    """A line `""` is a record (one empty field), not a blank line: the parser already
    skips blank lines, and a record must end valid or rejected, or the counts disagree."""
    m = csv_mapper({}, ["external_id", "qty", "name"])
    rows, rejects = many(m, [["E1", "1", "a"], [""]], [2, 3])
    assert len(rows) == 1
    assert rejects == [Reject(3, "", "expected 3 columns, found 1")]


def test_raw_uses_the_feed_delimiter() -> None:
    m = csv_mapper({}, ["external_id", "qty"], delimiter=";")
    assert reject(m, ["E1"]).raw == "E1"
    assert reject(m, ["E1", "2", "3"]).raw == "E1;2;3"


def test_short_row_without_header_is_rejected() -> None:
    m = csv_mapper({"fields": {"externalId": 0, "inventoryQuantity": 3}}, None)
    r = reject(m, ["E1", "x"], line=4)
    assert r.position == 4
    assert r.raw == "E1,x"
    assert "2 columns" in r.reason


@pytest.mark.parametrize("ext", ["", "   ", "\t"])
def test_blank_external_id_is_rejected(ext: str) -> None:
    m = csv_mapper({}, ["external_id", "qty"])
    r = reject(m, [ext, "1"], line=3)
    assert r.position == 3
    assert "externalId" in r.reason


def test_bad_value_is_rejected_with_its_attribute() -> None:
    m = csv_mapper({}, ["external_id", "qty", "retail_price"])
    rows, rejects = many(m, [["E1", "lots", "1"], ["E2", "1", "9.99 euros"], ["E3", "2", "3"]],
                         [2, 3, 4])
    assert [r.position for r in rejects] == [2, 3]
    assert rejects[0].reason.startswith("inventoryQuantity: ")
    assert rejects[1].reason.startswith("retailPrice: ")
    assert rows == [["E3", "2", "3"]]


def test_rejects_do_not_shift_other_rows_values() -> None:
    m = csv_mapper({}, ["external_id", "qty", "retail_price", "name"])
    rows, rejects = many(m, [["E1", "1", "1.00", "a"], ["E2", "x", "2.00", "b"],
                             ["E3", "3", "3.00", "c"], ["E4", "4", "-4", "d"],
                             ["E5", "", "", "e"]], [2, 3, 4, 5, 6])
    assert [r.position for r in rejects] == [3, 5]
    assert rows == [["E1", "1", "1.00", "a"], ["E3", "3", "3.00", "c"],
                    ["E5", None, None, "e"]]


BATCH_HEADER = ["external_id", "qty", "retail_price", "inventory_policy", "vendor_sku", "name",
                "description"]
BATCH = [
    ["E1", "1", "1,50", "track", "S1", "n1", "d1"],
    ["E2", "2,5", "1.234,5", "Deny", " S2 ", "", ""],
    ["E3", "", "", "", "", " n3 ", "d\t3"],
    ["E4", "four", "9", "track", "S4", "n4", "d4"],
    ["E5", "5", "5 euros", "never", "S5", "n5", "d5"],
    ["", "6", "6", "track", "S6", "n6", "d6"],
    ["E7", "7", "7", "track", "S7"],
    ["E8", "8", "8", "continue", "S8", "n\x1f8", "d8"],  # a control character
    ["E9", "9", "9", "continue", "S9", "n9", "d\x079"],   # ... in an extra attribute
    ["E10", "10", "10", "deny", "S10", "tab\tand\nline", "d10"],
]


@pytest.mark.parametrize("cut", range(len(BATCH) + 1))
def test_a_batch_maps_like_its_rows_one_by_one(cut: int) -> None:
    """Column-at-a-time work must give what row-at-a-time work gives, however batched."""
    m = csv_mapper({}, BATCH_HEADER, decimal_notation="comma", delimiter=";")
    lines = list(range(2, 2 + len(BATCH)))
    rows: list[list[Any]] = []
    rejects: list[Reject] = []
    for row, line in zip(BATCH, lines, strict=True):
        r, j = many(m, [row], [line])
        rows += r
        rejects += j
    assert [r[0] for r in rows] == ["E1", "E2", "E3", "E10"]
    assert [j.position for j in rejects] == [5, 6, 7, 8, 9, 10]
    assert [j.reason for j in rejects[-2:]] == ["name: contains control character U+001F",
                                                "description: contains control character U+0007"]
    a = many(m, BATCH[:cut], lines[:cut])
    b = many(m, BATCH[cut:], lines[cut:])
    assert a[0] + b[0] == rows
    assert _by_position(a[1] + b[1]) == rejects


def _by_position(rejects: list[Reject]) -> list[Reject]:
    # Within one batch the order of rejects is not promised (width checks come first).
    return sorted(rejects, key=lambda r: r.position)


def test_copy_text_special_characters_round_trip() -> None:
    m = csv_mapper({}, ["external_id", "name", "vendor_sku"])
    row = good(m, ["E\\1", "tab\there\nnew\rline \\N", "\\N"])
    assert row == ["E\\1", "tab\there\nnew\rline \\N", "\\N"]


@pytest.mark.parametrize(
    ("header", "fine", "value"),
    [
        (["external_id", "qty"], "1", "1\x1f2"),
        (["external_id", "retail_price"], "1.5", "1.5\x1f2"),
        (["external_id", "inventory_policy"], "deny", "track\x1fdeny"),
    ],
)
def test_unit_separator_in_a_value_does_not_pass_validation(header: list[str], fine: str,
                                                             value: str) -> None:
    """The column-at-a-time check joins values with \\x1f: a value holding one must not
    look like two valid values."""
    m = csv_mapper({}, header)
    rows, rejects = many(m, [["E1", fine], ["E2", value]], [2, 3])
    assert [r.position for r in rejects] == [3]
    assert len(rows) == 1


def test_unit_separator_in_a_comma_price_does_not_break_the_batch() -> None:
    m = csv_mapper({}, ["external_id", "retail_price"], decimal_notation="comma")
    rows, rejects = many(m, [["E1", "1,5"], ["E2", "1,5\x1f2,5"], ["E3", "3"]], [2, 3, 4])
    assert rows == [["E1", "1.5"], ["E3", "3"]]
    assert [r.position for r in rejects] == [3]


def test_decimal_notation_reaches_the_converters() -> None:
    m = csv_mapper({}, ["external_id", "retail_price", "qty"], decimal_notation="comma")
    assert good(m, ["E1", "1.234,50", "2,5"]) == ["E1", "1234.50", "3"]


def test_converters_per_column() -> None:
    header = ["external_id", "vendor_sku", "inventory_policy", "grams", "options", "name"]
    m = csv_mapper({}, header)
    row = good(m, ["E1", " S-1 ", "Deny", "12.5", '{"size": "M"}', " Lamp "])
    assert row == ["E1", "S-1", "deny", "12.5", '{"size":"M"}', " Lamp "]


def test_invalid_options_json_is_rejected() -> None:
    m = csv_mapper({}, ["external_id", "options"])
    assert reject(m, ["E1", "{size: M}"]).reason == "options: not valid JSON"
    assert value_of(m, ["E1", " "], "options") is None


# -- mask and columns ---------------------------------------------------------------------

def test_mask_and_columns_reflect_only_mapped_attributes() -> None:
    m = csv_mapper({}, ["external_id", "qty", "cost_price", "colour"])
    assert others(m) == ["inventory_quantity", "cost_price"]
    assert m.mask == (COLUMN_BIT["inventory_quantity"] | COLUMN_BIT["cost_price"]
                      | COLUMN_BIT["currency"])  # a price's currency comes along
    assert m.mask & COLUMN_BIT["retail_price"] == 0
    assert m.mask & COLUMN_BIT["extra"] == 0


def test_mask_with_every_column() -> None:
    attrs = ["externalId", "vendorSku", "barcode", "name", "inventoryQuantity",
             "inventoryPolicy", "retailPrice", "costPrice", "compareAtPrice", "grams", "mpn",
             "externalGroupId", "options", "images", "description"]
    m = csv_mapper({}, attrs)
    assert sorted([*others(m), "currency"]) == sorted(COLUMNS)  # currency: from the prices
    assert m.mask == 2 ** len(COLUMNS) - 1


def test_column_bits_are_distinct_powers_of_two() -> None:
    assert sorted(COLUMN_BIT.values()) == [1 << i for i in range(len(COLUMNS))]


# -- extra attributes ---------------------------------------------------------------------

def test_extra_attributes_land_in_extra_as_json() -> None:
    m = csv_mapper({}, ["external_id", "description", "Product Type", "qty", "tags"])
    assert others(m) == ["inventory_quantity", "extra"]
    assert m.mask == COLUMN_BIT["inventory_quantity"] | COLUMN_BIT["extra"]
    row = good(m, ["E1", 'A "lamp", 40 W\n', "Lighting", "3", ""])
    assert row[:2] == ["E1", "3"]
    assert isinstance(row[2], str)
    assert orjson.loads(row[2]) == {"description": 'A "lamp", 40 W\n', "productType": "Lighting"}


def test_extra_keeps_non_ascii_text() -> None:
    m = csv_mapper({"fields": {"externalId": 0, "vendorName": 1}}, None)
    extra = good(m, ["E1", "Müller & Söhne \u2028"], line=1)[-1]
    assert isinstance(extra, str)
    assert orjson.loads(extra) == {"vendorName": "Müller & Söhne \u2028"}


@pytest.mark.parametrize("attr", EXTRA_ATTRIBUTES)
def test_every_extra_attribute_maps_by_name(attr: str) -> None:
    m = csv_mapper({}, ["external_id", attr])
    assert others(m) == ["extra"]
    assert orjson.loads(str(good(m, ["E1", "v"])[-1])) == {attr: "v"}


# -- value maps ---------------------------------------------------------------------------

def test_value_map_applies_any_case_before_conversion() -> None:
    m = csv_mapper({"values": {"inventoryQuantity": {"in stock": 100, "Out Of Stock": 0}}},
               ["external_id", "qty"])
    rows, rejects = many(m, [["E1", "In Stock"], ["E2", " OUT OF STOCK "], ["E3", "7"],
                             ["E4", "2.5"]], [2, 3, 4, 5])
    assert rejects == []
    assert rows == [["E1", "100"], ["E2", "0"], ["E3", "7"], ["E4", "3"]]


def test_value_map_miss_still_goes_through_the_converter() -> None:
    m = csv_mapper({"values": {"inventoryQuantity": {"in stock": 100}}}, ["external_id", "qty"])
    r = reject(m, ["E1", "maybe"])
    assert r.reason.startswith("inventoryQuantity: ")


def test_value_map_for_an_enum_and_a_text_column() -> None:
    mapping = {"values": {"inventoryPolicy": {"Y": "continue", "n": "deny"},
                          "name": {"tbd": None}}}
    m = csv_mapper(mapping, ["external_id", "inventory_policy", "name"])
    assert good(m, ["E1", "y", "TBD"]) == ["E1", "continue", None]
    assert good(m, ["E2", "N", "Lamp"]) == ["E2", "deny", "Lamp"]


def test_value_map_output_is_validated() -> None:
    m = csv_mapper({"values": {"retailPrice": {"free": "-1"}}}, ["external_id", "retail_price"])
    assert "negative" in reject(m, ["E1", "FREE"]).reason


# -- images -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://a/1.jpg", ["https://a/1.jpg"]),
        ("https://a/1.jpg,https://a/2.jpg", ["https://a/1.jpg", "https://a/2.jpg"]),
        (" https://a/1.jpg , https://a/2.jpg\nhttps://a/3.jpg ",
         ["https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg"]),
        ("https://a/1.jpg https://a/2.jpg", ["https://a/1.jpg", "https://a/2.jpg"]),
        ('["https://a/1.jpg", "https://a/2.jpg"]', ["https://a/1.jpg", "https://a/2.jpg"]),
    ],
)
def test_images_become_a_json_array(text: str, expected: list[str]) -> None:
    m = csv_mapper({}, ["external_id", "images"])
    got = value_of(m, ["E1", text], "images")
    assert isinstance(got, str)
    assert orjson.loads(got) == expected


@pytest.mark.parametrize("text", ["", "  ", ", ,"])
def test_blank_images(text: str) -> None:
    m = csv_mapper({}, ["external_id", "images"])
    got = value_of(m, ["E1", text], "images")
    assert got is None or orjson.loads(str(got)) == []


def test_images_bad_json_array_is_rejected() -> None:
    m = csv_mapper({}, ["external_id", "images"])
    assert reject(m, ["E1", '["https://a/1.jpg"']).reason.startswith("images: ")


def test_currency_codes_of_prices_are_kept() -> None:
    m = csv_mapper({}, ["external_id", "retail_price", "cost_price"])
    assert m.columns == ["external_id", "retail_price", "cost_price", "currency"]
    batch = m.map([["A", "105.29 USD", "80"], ["B", "3.50", "2.00 EUR"], ["C", "1", "2"]],
                  [2, 3, 4])
    assert batch.rejects == []
    assert decode(batch) == [["A", "105.29", "80", "USD"], ["B", "3.50", "2.00", "EUR"],
                             ["C", "1", "2", None]]


def test_a_mapped_currency_column_wins() -> None:
    m = csv_mapper({}, ["external_id", "retail_price", "currency"])
    assert m.columns == ["external_id", "retail_price", "currency"]
    assert decode(m.map([["A", "9.99 USD", "gbp"]], [2])) == [["A", "9.99", "GBP"]]
    rejected = m.map([["A", "9.99", "pounds"]], [2]).rejects
    assert [r.reason for r in rejected] == [
        "currency: 'pounds' is not a three-letter ISO 4217 code"]


def test_other_text_in_a_price_is_still_a_reject() -> None:
    m = csv_mapper({}, ["external_id", "retail_price"])
    for text in ("9.99 euros", "€9.99 €", "USD", "9.99 US", "€"):
        [r] = m.map([["A", text]], [2]).rejects
        assert "retailPrice" in r.reason, text


# -- the checks pushed values get too (worker.values) ---------------------------------------

CHECKED = ["external_id", "qty", "retail_price", "name", "description", "options"]
CLEAN = ["E0", "1", "1.50", "n", "d", ""]


def with_value(column: str, value: str, ext: str = "E9") -> list[str]:
    row = [ext, *CLEAN[1:]]
    row[CHECKED.index(column)] = value
    return row


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("name", "a\x00b", "name: contains control character U+0000"),
    ("name", "a\x07b", "name: contains control character U+0007"),
    ("name", "a\x1fb", "name: contains control character U+001F"),
    ("external_id", "E\x1f9", "externalId: contains control character U+001F"),
    ("external_id", "E\x7f9", "externalId: contains control character U+007F"),
    ("qty", "1\x0b", "inventoryQuantity: contains control character U+000B"),
    ("retail_price", "1\x0c", "retailPrice: contains control character U+000C"),
    ("description", "d\x1b", "description: contains control character U+001B"),
    ("options", '{"k": "\\u0000"}', "options: contains control character U+0000"),
    ("options", '{"k\\u0007": 1}', "options: contains control character U+0007"),
])
@pytest.mark.parametrize("batched", [False, True])
def test_control_characters_reject_their_row(column: str, value: str, reason: str,
                                             batched: bool) -> None:
    m = csv_mapper({}, CHECKED)
    rows = [[f"E{i}", *CLEAN[1:]] for i in range(1, 6)] if batched else []
    got, rejects = many(m, [*rows, with_value(column, value)], list(range(2, len(rows) + 3)))
    assert [(r.position, r.reason) for r in rejects] == [(len(rows) + 2, reason)]
    assert [r[0] for r in got] == [f"E{i}" for i in range(1, len(rows) + 1)]


def test_tab_and_newlines_are_text() -> None:
    m = csv_mapper({}, CHECKED)
    row = good(m, ["E1", "1", "1.50", "two\tcols\r\nlines", "d\te", '{"k": "a\\tb"}'])
    assert row[3] == "two\tcols\r\nlines"
    assert orjson.loads(row[4]) == {"k": "a\tb"}
    assert orjson.loads(row[5]) == {"description": "d\te"}


def test_a_clean_batch_never_checks_value_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path: one look at the batch, no per-value control check."""
    def fail(attr: str, v: str) -> None:
        raise AssertionError("checked value by value")

    monkeypatch.setattr("worker.values.check_controls", fail)
    m = csv_mapper({}, ["external_id", "qty", "retail_price", "name", "description"])
    rows = [[f"E{i}", str(i), f"{i}.5", "tab\there", "d"] for i in range(100)]
    got, rejects = many(m, rows, list(range(2, 102)))
    assert (len(got), rejects) == (100, [])


@pytest.mark.parametrize(("ext", "fits"), [
    ("k" * 1000, True), ("k" * 1001, False), ("é" * 500, True), ("é" * 499 + "€", False),
    ("\U0001f600" * 250, True), ("\U0001f600" * 250 + "k", False), ("k" * 3000, False),
    (" " + "k" * 1000 + " ", True),  # measured trimmed, as it is stored
])
@pytest.mark.parametrize("batched", [False, True])
def test_external_ids_fit_the_index(ext: str, fits: bool, batched: bool) -> None:
    m = csv_mapper({}, ["external_id", "qty"])
    rows = [["A", "1"], ["B" * 300, "2"]] if batched else []
    got, rejects = many(m, [*rows, [ext, "3"]], list(range(2, len(rows) + 3)))
    if fits:
        assert rejects == []
        assert got[-1] == [ext.strip(), "3"]
    else:
        assert [(r.position, r.reason) for r in rejects] == [(
            len(rows) + 2, f"externalId is {len(ext.encode())} bytes long (UTF-8), over the "
            "1000-byte limit of an item key")]
        assert [r[0] for r in got] == [r[0] for r in rows]


@pytest.mark.parametrize("notation", ["decimal", "comma"])
def test_prices_and_grams_within_the_digit_limits(notation: str) -> None:
    m = csv_mapper({}, ["external_id", "retail_price", "grams"], decimal_notation=notation)
    point = "," if notation == "comma" else "."
    longest = "9" * 15 + point + "9" * 30
    rows = [["A", "9" * 15, longest], ["B", "0" * 20 + "1", "1" + point + "0" * 40]]
    got, rejects = many(m, rows, [2, 3])
    assert rejects == []
    assert [r[1:3] for r in got] == [["9" * 15, longest.replace(",", ".")],
                                     ["0" * 20 + "1", "1." + "0" * 40]]


@pytest.mark.parametrize(("value", "where"), [
    ("9" * 16, "before"), ("1" * 5000, "before"), ("1.5" + "1" * 30, "after")])
@pytest.mark.parametrize("batched", [False, True])
def test_prices_beyond_the_digit_limits(value: str, where: str, batched: bool) -> None:
    m = csv_mapper({}, ["external_id", "retail_price", "grams"])
    rows = [["A", "1.5", "2"]] if batched else []
    got, rejects = many(m, [*rows, ["B", "1", value]], list(range(2, len(rows) + 3)))
    assert len(rejects) == 1
    assert rejects[0].reason.startswith("grams: ")
    assert rejects[0].reason.endswith(f"digits {where} the decimal point")
    assert len(got) == len(rows)


@pytest.mark.parametrize("qty", ["2147483648", "9" * 30, "1" * 5000, "-2147483649.0"])
def test_quantities_out_of_range(qty: str) -> None:
    m = csv_mapper({}, ["external_id", "qty"])
    got, rejects = many(m, [["A", "7"], ["B", qty]], [2, 3])
    assert [r[0] for r in got] == ["A"]
    assert [r.position for r in rejects] == [3]
    assert rejects[0].reason.endswith("is out of range")
