"""Value converters: what each accepts, what it gives Postgres, and how it refuses."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from worker.values import (
    INVENTORY_POLICIES,
    enum_converter,
    number_parser,
    price_converter,
    quantity_converter,
)

QTY = "inventoryQuantity"
PRICE = "retailPrice"
# What Postgres' numeric input accepts (ASCII digits only), for the text a converter returns.
PG_NUMERIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


# -- quantities ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", 10),
        ("0", 0),
        ("-4", -4),
        ("+3", 3),
        (" 7 ", 7),
        ("10.00", 10),
        ("2.5", 3),
        ("-2.5", -3),
        ("0.5", 1),
        ("-0.5", -1),
        ("1.4999", 1),
        ("3.5000001", 4),
        ("1,234.5", 1235),
        ("2147483647", 2**31 - 1),
        ("2147483647.4", 2**31 - 1),
        ("-2147483647", -(2**31) + 1),
    ],
)
def test_quantity_decimal_notation(text: str, expected: int) -> None:
    """Canonical text: the whole number, as Postgres integer input reads it."""
    got = quantity_converter(QTY, "decimal")(text)
    assert got == str(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10", 10), ("2,5", 3), ("-2,5", -3), ("10,00", 10), ("1.234", 1234),
     ("1.234,5", 1235), ("1 234,4", 1234)],
)
def test_quantity_comma_notation(text: str, expected: int) -> None:
    assert quantity_converter(QTY, "comma")(text) == str(expected)


def test_quantity_int32_minimum_is_in_range() -> None:
    """-2**31 fits Postgres integer (inventory_quantity), so it must not be rejected."""
    assert quantity_converter(QTY, "decimal")("-2147483648") == "-2147483648"


@pytest.mark.parametrize("text", ["", " ", "\t", "  \n"])
@pytest.mark.parametrize("notation", ["decimal", "comma"])
def test_quantity_blank_is_none(text: str, notation: str) -> None:
    assert quantity_converter(QTY, notation)(text) is None


@pytest.mark.parametrize(
    "text",
    ["abc", "1 in stock", "in stock", "1e3", "NaN", "Infinity", "0x10", "--1", "1.2.3", "2,5"],
)
def test_quantity_rejects_non_numbers(text: str) -> None:
    with pytest.raises(ValueError, match=r"^inventoryQuantity: .*not a whole number") as info:
        quantity_converter(QTY, "decimal")(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["2147483648", "-2147483649", "2147483647.5", "99999999999",
                                  "1" + "0" * 20])
def test_quantity_out_of_int32_range(text: str) -> None:
    with pytest.raises(ValueError, match=r"^inventoryQuantity: .*out of range"):
        quantity_converter(QTY, "decimal")(text)


def test_quantity_error_names_the_attribute_given() -> None:
    with pytest.raises(ValueError, match=r"^stockLevel: "):
        quantity_converter("stockLevel", "decimal")("lots")


# -- prices -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9.99", "9.99"),
        ("12", "12"),
        ("0", "0"),
        (" 9.99 ", "9.99"),
        (".5", ".5"),
        ("1,234.56", "1234.56"),
        ("1,234,567.89", "1234567.89"),
        ("-0", "-0"),
        ("-0.00", "-0.00"),
    ],
)
def test_price_decimal_notation(text: str, expected: str) -> None:
    got = price_converter(PRICE, "decimal")(text)
    assert got == expected
    assert isinstance(got, str)
    assert PG_NUMERIC.fullmatch(got)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9,99", "9.99"),
        ("12", "12"),
        ("0,5", "0.5"),
        ("1.234,56", "1234.56"),
        ("1 234,56", "1234.56"),
        ("1.234.567,89", "1234567.89"),
        ("1.234", "1234"),
    ],
)
def test_price_comma_notation(text: str, expected: str) -> None:
    got = price_converter(PRICE, "comma")(text)
    assert got == expected
    assert isinstance(got, str)
    assert Decimal(got) == Decimal(expected)


@pytest.mark.parametrize("text", ["", "   "])
@pytest.mark.parametrize("notation", ["decimal", "comma"])
def test_price_blank_is_none(text: str, notation: str) -> None:
    assert price_converter(PRICE, notation)(text) is None


@pytest.mark.parametrize("text", ["9.99 euros", "€9.99", "$5", "abc", "1e3", "NaN", "1.2.3",
                                  "1 234.56", "1,23.45", "9.99-"])
@pytest.mark.parametrize("notation", ["decimal", "comma"])
def test_price_rejects_non_numbers(text: str, notation: str) -> None:
    with pytest.raises(ValueError, match=r"^retailPrice: ") as info:
        price_converter(PRICE, notation)(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(("text", "notation"), [("-1", "decimal"), ("-0.01", "decimal"),
                                                ("-9,99", "comma"), ("-1.234,5", "comma")])
def test_price_rejects_negative(text: str, notation: str) -> None:
    with pytest.raises(ValueError, match=r"^retailPrice: .*negative"):
        price_converter(PRICE, notation)(text)


@pytest.mark.parametrize("text", ["9,99", "0,5", ",5"])
def test_price_decimal_comma_in_decimal_notation_hints(text: str) -> None:
    with pytest.raises(ValueError, match=r"decimal comma .*notation is 'decimal'"):
        price_converter(PRICE, "decimal")(text)


def test_price_point_in_comma_notation_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^retailPrice: "):
        price_converter(PRICE, "comma")("9.99")


# Arabic-Indic nine, Arabic-Indic 12.5, fullwidth 12, 1 + Devanagari two.
@pytest.mark.parametrize("text", ["\u0669", "\u0661\u0662.\u0665", "\uff11\uff12", "1\u0968"])
@pytest.mark.parametrize("notation", ["decimal", "comma"])
def test_price_never_passes_non_ascii_digits_to_postgres(text: str, notation: str) -> None:
    """Postgres numeric reads ASCII digits only: anything else must be a reject, or be
    turned into ASCII, never handed on as is (it would fail the whole COPY)."""
    try:
        got = price_converter(PRICE, notation)(text)
    except ValueError:
        return
    assert isinstance(got, str)
    assert PG_NUMERIC.fullmatch(got), f"{text!r} -> {got!r}"


def test_number_parser_gives_postgres_text() -> None:
    assert number_parser("decimal")("1,234.5") == "1234.5"
    assert number_parser("comma")("1.234,5") == "1234.5"


# -- enums --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [("track", "track"), ("Track", "track"), (" DENY ", "deny"), ("continue", "continue"),
     ("", None), ("   ", None)],
)
def test_enum_accepts_any_case_and_blank(text: str, expected: str | None) -> None:
    assert enum_converter("inventoryPolicy", INVENTORY_POLICIES)(text) == expected


def test_enum_accepts_every_policy() -> None:
    conv = enum_converter("inventoryPolicy", INVENTORY_POLICIES)
    assert {conv(p.upper()) for p in INVENTORY_POLICIES} == INVENTORY_POLICIES


def test_enum_rejects_other_values_listing_the_allowed() -> None:
    with pytest.raises(ValueError, match=r"is not one of") as info:
        enum_converter("inventoryPolicy", INVENTORY_POLICIES)("sometimes")
    message = str(info.value)
    assert message.startswith("inventoryPolicy: 'sometimes'")
    assert all(p in message for p in INVENTORY_POLICIES)
