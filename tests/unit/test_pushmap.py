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

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                     "feed-update.schema.json").read_text())


def value(item: Item, column: str) -> str | None:
    return item.values[COLUMNS.index(column)]


def test_a_minimal_variant() -> None:
    item = to_item(7, {"externalId": " 1234 ", "vendorSku": "1234", "inventoryQuantity": 10},
                   None)
    assert (item.feed_id, item.external_id) == (7, "1234")
    assert item.present == COLUMN_BIT["vendor_sku"] | COLUMN_BIT["inventory_quantity"]
    assert value(item, "inventory_quantity") == "10"
    assert value(item, "name") is None


@pytest.mark.parametrize(("given", "stored"), [
    (10, "10"), (2.5, "3"), (-2.5, "-3"), (10.0, "10"), ("7", "7"), ("7.6", "8"),
    (2**31 - 1, "2147483647"), (-(2**31), "-2147483648"), (None, None)])
def test_quantities(given: Any, stored: str | None) -> None:
    item = to_item(1, {"externalId": "a", "inventoryQuantity": given}, None)
    assert value(item, "inventory_quantity") == stored


@pytest.mark.parametrize("bad", ["lots", "1 in stock", True, [], {}, 2**31, float("nan")])
def test_bad_quantities_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="inventoryQuantity"):
        to_item(1, {"externalId": "a", "inventoryQuantity": bad}, None)


@pytest.mark.parametrize(("given", "stored"), [
    (9.99, "9.99"), (10, "10"), ("9.99", "9.99"), ("1,234.50", "1234.50"), (0, "0"),
    (None, None)])
def test_prices(given: Any, stored: str | None) -> None:
    item = to_item(1, {"externalId": "a", "retailPrice": given}, None)
    assert value(item, "retail_price") == stored


@pytest.mark.parametrize("bad", ["9.99 euros", "cheap", -1, "-1.00", False, [1]])
def test_bad_prices_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="retailPrice"):
        to_item(1, {"externalId": "a", "retailPrice": bad}, None)


@pytest.mark.parametrize("variant", [{}, {"externalId": ""}, {"externalId": "  "},
                                     {"externalId": None}, {"externalId": True},
                                     {"externalId": [1]}, "not an object"])
def test_external_id_is_required(variant: Any) -> None:
    with pytest.raises(ValueError, match=r"externalId|object"):
        to_item(1, variant, None)


def test_null_clears_and_absent_keeps() -> None:
    item = to_item(1, {"externalId": "a", "name": None}, None)
    assert item.present == COLUMN_BIT["name"]
    assert value(item, "name") is None


def test_unknown_attributes_go_to_extra() -> None:
    item = to_item(1, {"externalId": "a", "color": "red", "size": 42}, None)
    assert item.extra == {"color": "red", "size": 42}
    assert item.present == COLUMN_BIT["extra"]
    line = item.copy_line().split("\t")
    assert len(line) == len(PUSH_COLUMNS)
    assert orjson.loads(line[PUSH_COLUMNS.index("extra")]) == {"color": "red", "size": 42}


def test_copy_line_escapes_text() -> None:
    item = to_item(1, {"externalId": "a\tb", "name": "x\\y\nz"}, None)
    fields = item.copy_line().split("\t")
    assert fields[1] == "a\\tb"
    assert fields[PUSH_COLUMNS.index("name")] == "x\\\\y\\nz"


def test_times() -> None:
    default = datetime(2026, 1, 1, tzinfo=UTC)
    plain = to_item(1, {"externalId": "a"}, default)
    assert plain.updated_at is None  # the message's time orders it, but is not stored
    assert plain.order_at == default
    item = to_item(1, {"externalId": "a", "inventoryUpdatedAt": "2026-02-03T04:05:06Z"}, default)
    assert item.updated_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert item.order_at == item.updated_at  # a variant's own time orders it
    naive = to_item(1, {"externalId": "a", "inventoryUpdatedAt": "2026-02-03T04:05:06"}, None)
    assert naive.updated_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    with pytest.raises(ValueError, match="inventoryUpdatedAt"):
        to_item(1, {"externalId": "a", "inventoryUpdatedAt": "yesterday"}, None)


def test_folding_later_wins_attribute_by_attribute() -> None:
    a = to_item(1, {"externalId": "a", "name": "first", "inventoryQuantity": 1}, None)
    a.absorb(to_item(1, {"externalId": "a", "inventoryQuantity": 2, "color": "red"}, None))
    assert (value(a, "name"), value(a, "inventory_quantity")) == ("first", "2")
    assert a.extra == {"color": "red"}
    assert a.present == (COLUMN_BIT["name"] | COLUMN_BIT["inventory_quantity"]
                         | COLUMN_BIT["extra"])


def test_folding_by_time_when_both_carry_one() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    newer = to_item(1, {"externalId": "a", "inventoryQuantity": 9}, t + timedelta(1))
    newer.absorb(to_item(1, {"externalId": "a", "inventoryQuantity": 3, "name": "n"}, t))
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
            to_item(1, variant, None)
