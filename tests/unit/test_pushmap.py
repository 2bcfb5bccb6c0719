"""Pushed variants -> items: value rules, partial updates, folding, the message contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from worker.errors import BadMessage
from worker.mapping import COLUMN_BIT, COLUMNS
from worker.messages import decode_update, encode_update
from worker.pushmap import PUSH_COLUMNS, Item, to_item
from worker.settings import Settings

SETTINGS = Settings()
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                     "feed-update.schema.json").read_text())


def value(item: Item, column: str) -> str | None:
    return item.values[COLUMNS.index(column)]


def test_a_minimal_variant() -> None:
    item = to_item(7, {"externalId": " 1234 ", "vendorSku": "1234", "inventoryQuantity": 10},
                   None, SETTINGS)
    assert (item.feed_id, item.external_id) == (7, "1234")
    assert item.present == COLUMN_BIT["vendor_sku"] | COLUMN_BIT["inventory_quantity"]
    assert value(item, "inventory_quantity") == "10"
    assert value(item, "name") is None


@pytest.mark.parametrize(("given", "stored"), [
    (10, "10"), (2.5, "3"), (-2.5, "-3"), (10.0, "10"), ("7", "7"), ("7.6", "8"),
    (2**31 - 1, "2147483647"), (-(2**31), "-2147483648"), (None, None)])
def test_quantities(given: Any, stored: str | None) -> None:
    item = to_item(1, {"externalId": "a", "inventoryQuantity": given}, None, SETTINGS)
    assert value(item, "inventory_quantity") == stored


@pytest.mark.parametrize("bad", ["lots", "1 in stock", True, [], {}, 2**31, float("nan")])
def test_bad_quantities_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="inventoryQuantity"):
        to_item(1, {"externalId": "a", "inventoryQuantity": bad}, None, SETTINGS)


@pytest.mark.parametrize(("given", "stored"), [
    (9.99, "9.99"), (10, "10"), ("9.99", "9.99"), ("1,234.50", "1234.50"), (0, "0"),
    (None, None)])
def test_prices(given: Any, stored: str | None) -> None:
    item = to_item(1, {"externalId": "a", "retailPrice": given}, None, SETTINGS)
    assert value(item, "retail_price") == stored


@pytest.mark.parametrize("bad", ["9.99 euros", "cheap", -1, "-1.00", False, [1]])
def test_bad_prices_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="retailPrice"):
        to_item(1, {"externalId": "a", "retailPrice": bad}, None, SETTINGS)


@pytest.mark.parametrize("variant", [{}, {"externalId": ""}, {"externalId": "  "},
                                     {"externalId": None}, {"externalId": True},
                                     {"externalId": [1]}, "not an object"])
def test_external_id_is_required(variant: Any) -> None:
    with pytest.raises(ValueError, match=r"externalId|object"):
        to_item(1, variant, None, SETTINGS)


def test_null_clears_and_absent_keeps() -> None:
    item = to_item(1, {"externalId": "a", "name": None}, None, SETTINGS)
    assert item.present == COLUMN_BIT["name"]
    assert value(item, "name") is None


def test_unknown_attributes_go_to_extra() -> None:
    item = to_item(1, {"externalId": "a", "color": "red", "size": 42}, None, SETTINGS)
    assert item.extra == {"color": "red", "size": 42}
    assert item.present == COLUMN_BIT["extra"]
    line = item.copy_line().split("\t")
    assert len(line) == len(PUSH_COLUMNS)
    assert orjson.loads(line[PUSH_COLUMNS.index("extra")]) == {"color": "red", "size": 42}


def test_copy_line_escapes_text() -> None:
    item = to_item(1, {"externalId": "a\tb", "name": "x\\y\nz"}, None, SETTINGS)
    fields = item.copy_line().split("\t")
    assert fields[1] == "a\\tb"
    assert fields[PUSH_COLUMNS.index("name")] == "x\\\\y\\nz"


def test_times() -> None:
    default = datetime(2026, 1, 1, tzinfo=UTC)
    plain = to_item(1, {"externalId": "a"}, default, SETTINGS)
    assert plain.updated_at is None  # the message's time orders it, but is not stored
    assert plain.order_at == default
    item = to_item(1, {"externalId": "a", "inventoryUpdatedAt": "2026-02-03T04:05:06Z"}, default,
                   SETTINGS)
    assert item.updated_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert item.order_at == item.updated_at  # a variant's own time orders it
    naive = to_item(1, {"externalId": "a", "inventoryUpdatedAt": "2026-02-03T04:05:06"}, None,
                    SETTINGS)
    assert naive.updated_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    with pytest.raises(ValueError, match="inventoryUpdatedAt"):
        to_item(1, {"externalId": "a", "inventoryUpdatedAt": "yesterday"}, None, SETTINGS)


def test_folding_later_wins_attribute_by_attribute() -> None:
    a = to_item(1, {"externalId": "a", "name": "first", "inventoryQuantity": 1}, None, SETTINGS)
    a.absorb(to_item(1, {"externalId": "a", "inventoryQuantity": 2, "color": "red"}, None,
                     SETTINGS))
    assert (value(a, "name"), value(a, "inventory_quantity")) == ("first", "2")
    assert a.extra == {"color": "red"}
    assert a.present == (COLUMN_BIT["name"] | COLUMN_BIT["inventory_quantity"]
                         | COLUMN_BIT["extra"])


def test_folding_by_time_when_both_carry_one() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    newer = to_item(1, {"externalId": "a", "inventoryQuantity": 9}, t + timedelta(1), SETTINGS)
    newer.absorb(to_item(1, {"externalId": "a", "inventoryQuantity": 3, "name": "n"}, t, SETTINGS))
    assert (value(newer, "inventory_quantity"), value(newer, "name")) == ("9", "n")
    assert newer.order_at == t + timedelta(1)
    assert newer.updated_at is None  # message times order items; they are not stored


# -- the message contract -----------------------------------------------------------------

VALID = [
    {"feedId": 1, "variants": [{"externalId": "1234", "vendorSku": "1234",
                                "inventoryQuantity": 10}]},
    {"feedId": 2, "variants": [{"externalId": 5, "retailPrice": 9.99, "name": None,
                                "color": "red", "inventoryUpdatedAt": "2026-01-01T00:00:00Z"}]},
]
INVALID = [
    ({"variants": [{"externalId": "a"}]}, "lacks feedId"),
    ({"feedId": 1}, "variants"),
    ({"feedId": 1, "variants": []}, "variants"),
    ({"feedId": 1, "variants": {"externalId": "a"}}, "variants"),
    ({"feedId": 0, "variants": [{"externalId": "a"}]}, "feedId"),
    ({"feedId": 1, "variants": [{"externalId": "a"}], "extra": 1}, "unknown properties"),
]


@pytest.mark.parametrize("body", VALID)
def test_valid_updates_decode_and_match_the_schema(body: dict[str, Any]) -> None:
    update = decode_update(orjson.dumps(body))
    assert (update.feed_id, update.variants) == (body["feedId"], body["variants"])
    jsonschema.Draft202012Validator(SCHEMA).validate(body)


@pytest.mark.parametrize(("body", "reason"), INVALID)
def test_bad_updates_are_bad_messages_and_break_the_schema(body: dict[str, Any],
                                                          reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        decode_update(orjson.dumps(body))
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(body)


def test_too_many_variants_is_a_bad_message() -> None:
    with pytest.raises(BadMessage, match="at most"):
        decode_update(encode_update(1, [{"externalId": str(i)} for i in range(10_001)]))


def test_the_schema_flags_what_the_worker_rejects_per_variant() -> None:
    """A variant the worker would reject on its own also breaks the schema."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for variant in ({"vendorSku": "x"}, {"externalId": "a", "inventoryQuantity": "lots"},
                    {"externalId": "a", "retailPrice": "9.99 euros"},
                    {"externalId": "a", "inventoryPolicy": "sometimes"}):
        assert not validator.is_valid({"feedId": 1, "variants": [variant]}), variant
        with pytest.raises(ValueError):  # noqa: PT011 - the reason is checked elsewhere
            to_item(1, variant, None, SETTINGS)


# -- the checks pulled values get (worker.values) -----------------------------------------

def reject_of(variant: dict[str, Any], settings: Settings = SETTINGS) -> str:
    with pytest.raises(ValueError) as info:  # noqa: PT011 - the reason is compared whole
        to_item(1, variant, None, settings)
    return str(info.value)


@pytest.mark.parametrize(("variant", "reason"), [
    ({"externalId": "a", "name": "x\x00y"}, "name: contains control character U+0000"),
    ({"externalId": "a\x00"}, "externalId: contains control character U+0000"),
    ({"externalId": "a", "vendorSku": "\x07"}, "vendorSku: contains control character U+0007"),
    ({"externalId": "a", "color": "r\x00ed"}, "color: contains control character U+0000"),
    ({"externalId": "a", "co\x01lor": "red"},
     "an attribute name: contains control character U+0001"),
    ({"externalId": "a", "specs": {"w\x7f": 1}}, "specs: contains control character U+007F"),
    ({"externalId": "a", "specs": [{"w": ["\x1f"]}]},
     "specs: contains control character U+001F"),
    ({"externalId": "a", "options": {"size": "M\x00"}},
     "options: contains control character U+0000"),
    ({"externalId": "a", "images": ["http://x/\x0b"]},
     "images: contains control character U+000B"),
    ({"externalId": "a", "inventoryUpdatedAt": "2026-01-01\x00"},
     "inventoryUpdatedAt: contains control character U+0000"),
])
def test_control_characters_reject_the_variant(variant: dict[str, Any], reason: str) -> None:
    assert reject_of(variant) == reason


def test_a_clean_variant_is_not_checked_value_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """One look at its JSON text vouches for all its values."""
    def fail(*args: Any) -> None:
        raise AssertionError("checked value by value")

    monkeypatch.setattr("worker.values.check_text", fail)
    monkeypatch.setattr("worker.values.check_json_text", fail)
    item = to_item(1, {"externalId": "a", "name": "n\t", "options": {"k": "v"}, "x": [1]},
                   None, SETTINGS)
    assert item.extra == {"x": [1]}


def test_tab_and_newlines_are_text() -> None:
    item = to_item(1, {"externalId": "a", "name": "two\tcols\r\nlines",
                       "options": {"note": "a\tb\nc"}, "color": "x\ny"}, None, SETTINGS)
    assert value(item, "name") == "two\tcols\r\nlines"
    assert item.extra == {"color": "x\ny"}


def test_written_out_escapes_are_text() -> None:
    item = to_item(1, {"externalId": "a", "options": {"k": "\\u0000"}, "x": ["\\\\u0007"]},
                   None, SETTINGS)
    assert orjson.loads(value(item, "options") or "") == {"k": "\\u0000"}


CAP = Settings(max_field_chars=100)


@pytest.mark.parametrize("attr", ["name", "vendorSku", "barcode", "mpn", "color"])
def test_a_string_at_the_cap_lands_and_one_over_is_rejected(attr: str) -> None:
    item = to_item(1, {"externalId": "a", attr: "x" * 100}, None, CAP)
    assert (value(item, "name") if attr == "name" else "x" * 100) == "x" * 100
    assert reject_of({"externalId": "a", attr: "x" * 101}, CAP) == (
        f"{attr} is 101 characters long, over the 100-character cap "
        "(FEED_WORKER_MAX_FIELD_CHARS)")


@pytest.mark.parametrize(("variant", "name"), [
    ({"options": {"k": "x" * 100}}, "options"),
    ({"images": ["x" * 100]}, "images"),
    ({"specs": {"k": "x" * 100}}, "specs"),
    ({"k" * 101: 1}, "an attribute name"),
])
def test_json_values_are_capped_by_their_text(variant: dict[str, Any], name: str) -> None:
    assert reject_of({"externalId": "a", **variant}, CAP).startswith(
        f"{name} is 10")  # its JSON text's length


def test_many_extras_under_the_cap_each_land() -> None:
    extra = {f"k{i}": "x" * 90 for i in range(5)}
    assert to_item(1, {"externalId": "a", **extra}, None, CAP).extra == extra


def test_the_default_cap_refuses_a_ten_megabyte_name() -> None:
    assert reject_of({"externalId": "a", "name": "n" * 10_000_000}).startswith(
        "name is 10000000 characters long, over the 131072-character cap")


@pytest.mark.parametrize(("ext", "fits"), [
    ("k" * 1000, True), ("k" * 1001, False), ("é" * 500, True), ("é" * 500 + "k", False),
    ("\U0001f600" * 250, True), ("\U0001f600" * 250 + "k", False), ("k" * 3000, False),
])
def test_external_id_fits_the_index(ext: str, fits: bool) -> None:
    if fits:
        assert to_item(1, {"externalId": f" {ext} "}, None, SETTINGS).external_id == ext
    else:
        assert reject_of({"externalId": ext}) == (
            f"externalId is {len(ext.encode())} bytes long (UTF-8), over the 1000-byte "
            "limit of an item key")


@pytest.mark.parametrize(("given", "stored"), [
    (1e-05, "0.00001"), (-0.0, "-0.0"), (0.0, "0.0"), (123456789012345, "123456789012345"),
    (999999999999999.9, "999999999999999.9"), ("-0", "-0")])
def test_prices_within_the_digit_limits(given: Any, stored: str) -> None:
    item = to_item(1, {"externalId": "a", "grams": given}, None, SETTINGS)
    assert value(item, "grams") == stored


@pytest.mark.parametrize(("given", "reason"), [
    (1e300, "more than 15 digits before the decimal point"),
    (1e16, "more than 15 digits before the decimal point"),
    (10**15, "more than 15 digits before the decimal point"),
    (2**63, "more than 15 digits before the decimal point"),
    ("1" * 16, "more than 15 digits before the decimal point"),
    (5e-324, "more than 30 digits after the decimal point"),
    ("0." + "0" * 30 + "1", "more than 30 digits after the decimal point"),
    ("1e300", "not a plain number"),
])
def test_prices_beyond_the_digit_limits(given: Any, reason: str) -> None:
    assert reason in reject_of({"externalId": "a", "retailPrice": given})


@pytest.mark.parametrize("given", [1e300, -1e300, 2.0**31, 1e10, "9" * 5000, "1" * 20 + ".5"])
def test_quantities_out_of_range_are_rejects(given: Any) -> None:
    assert reject_of({"externalId": "a", "inventoryQuantity": given}).endswith("is out of range")


def test_negative_zero_quantity_is_zero() -> None:
    item = to_item(1, {"externalId": "a", "inventoryQuantity": -0.0}, None, SETTINGS)
    assert value(item, "inventory_quantity") == "0"


def test_a_time_far_in_the_future_is_rejected() -> None:
    assert reject_of({"externalId": "a", "inventoryUpdatedAt": "9999-12-31T00:00:00Z"}) == (
        "inventoryUpdatedAt: 9999-12-31T00:00:00+00:00 is more than 300 s in the future "
        "(FEED_WORKER_MAX_FUTURE_SKEW_S)")


def test_the_future_skew_is_a_setting() -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=120)).isoformat()
    item = to_item(1, {"externalId": "a", "inventoryUpdatedAt": soon}, None, SETTINGS)
    assert item.updated_at == datetime.fromisoformat(soon)
    tight = Settings(max_future_skew_s=60)
    assert "is more than 60 s in the future" in reject_of(
        {"externalId": "a", "inventoryUpdatedAt": soon}, tight)


@pytest.mark.parametrize("old", ["1899-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"])
def test_a_time_before_1900_is_rejected(old: str) -> None:
    assert reject_of({"externalId": "a", "inventoryUpdatedAt": old}).endswith(
        "is before 1900")
