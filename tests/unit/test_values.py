"""Value converters: what each accepts, what it gives Postgres, and how it refuses."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from worker.values import (
    INVENTORY_POLICIES,
    MAX_FRACTION_DIGITS,
    MAX_INTEGER_DIGITS,
    MAX_KEY_BYTES,
    check_controls,
    check_digits,
    check_json_controls,
    check_json_text,
    check_key,
    check_text,
    check_time,
    enum_converter,
    has_controls,
    json_within,
    keys_fit,
    number_parser,
    price_converter,
    quantity_converter,
    whole,
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


@pytest.mark.parametrize("text", ["9.99 euros", "€9.99€", "$", "abc", "1e3", "NaN", "1.2.3",
                                  "1 23.56", "1,23.45", "9.99-", "R$ 5", "$ 1e3"])
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


# -- shared checks: what Postgres would refuse inside a whole run or push group ----------------

def exactly(reason: str) -> str:
    return f"^{re.escape(reason)}$"


CONTROLS = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)]


@pytest.mark.parametrize("char", CONTROLS)
def test_control_characters_are_refused_naming_attribute_and_code_point(char: str) -> None:
    reason = f"name: contains control character U+{ord(char):04X}"
    with pytest.raises(ValueError, match=exactly(reason)):
        check_controls("name", f"a{char}b")


def test_the_quick_look_finds_what_the_check_refuses() -> None:
    """has_controls (the mapper's look at a whole batch) against check_controls, for every
    code point below U+0800 and a few wider ones, alone and among multi-byte text."""
    for c in [*range(0x800), 0xD800, 0xFFFF, 0x10FFFF, 0x1F600]:
        text = f"\u00e9{chr(c)}\u20ac"
        try:
            check_controls("x", text)
        except ValueError:
            assert has_controls(text), hex(c)
        else:
            assert not has_controls(text), hex(c)


@pytest.mark.parametrize("text", ["tab\there", "line\nbreak", "cr\r\n", "", "caf\u00e9 \u20ac",
                                  "\u0080\u009f"])  # C1 controls are not refused
def test_tab_newline_and_other_text_pass(text: str) -> None:
    check_controls("name", text)
    check_text("name", text, 100)


def test_the_size_cap_uses_the_parsers_wording() -> None:
    check_text("name", "x" * 10, 10)
    reason = "name is 11 characters long, over the 10-character cap (FEED_WORKER_MAX_FIELD_CHARS)"
    with pytest.raises(ValueError, match=exactly(reason)):
        check_text("name", "x" * 11, 10)
    check_json_text("options", '["123456789"]', 13)
    with pytest.raises(ValueError, match="options is 13 characters long, over the 12-"):
        check_json_text("options", '["123456789"]', 12)


@pytest.mark.parametrize("char", CONTROLS)
def test_control_characters_inside_json_text(char: str) -> None:
    for doc in ({"k": f"v{char}"}, {f"k{char}": 1}, [[{"deep": [char]}]]):
        reason = f"options: contains control character U+{ord(char):04X}"
        with pytest.raises(ValueError, match=exactly(reason)):
            check_json_text("options", orjson.dumps(doc).decode(), 1000)


@pytest.mark.parametrize("doc", [
    {"k": "tab\tnew\nline\r"}, {"k": "\\u0000 written out"}, {"k": "\\\\u0007"},
    {"k": "\\b\\f"}, ["\\", "\\\\"], {"\u00e9": "\u0080"}])
def test_json_text_without_control_characters_passes(doc: object) -> None:
    check_json_text("options", orjson.dumps(doc).decode(), 1000)


def test_an_escaped_backslash_before_a_control_escape_is_still_read() -> None:
    with pytest.raises(ValueError, match=r"U\+0000"):
        check_json_controls("extra", orjson.dumps({"k": "\\\x00"}).decode())


@pytest.mark.parametrize(("key", "fits"), [
    ("k" * MAX_KEY_BYTES, True),
    ("k" * (MAX_KEY_BYTES + 1), False),
    ("\u00e9" * (MAX_KEY_BYTES // 2), True),          # 2 bytes each: exactly the limit
    ("\u00e9" * (MAX_KEY_BYTES // 2) + "k", False),
    ("\u20ac" * (MAX_KEY_BYTES // 3) + "k", True),    # 3 bytes each: 999 + 1
    ("\u20ac" * (MAX_KEY_BYTES // 3 + 1), False),
    ("\U0001f600" * (MAX_KEY_BYTES // 4), True),      # 4 bytes each: 250 characters
    ("\U0001f600" * (MAX_KEY_BYTES // 4) + "k", False),
])
def test_key_length_is_counted_in_utf8_bytes(key: str, fits: bool) -> None:
    assert keys_fit(["short", key]) is fits
    if fits:
        assert check_key(key) == key
    else:
        reason = (f"externalId is {len(key.encode())} bytes long (UTF-8), over the "
                  f"{MAX_KEY_BYTES}-byte limit of an item key")
        with pytest.raises(ValueError, match=exactly(reason)):
            check_key(key)


@pytest.mark.parametrize("text", [
    "9" * MAX_INTEGER_DIGITS, "9" * MAX_INTEGER_DIGITS + "." + "9" * MAX_FRACTION_DIGITS,
    "0" * 40 + "1", "1." + "0" * 40, "-0", "-0.0", "+1.5", ".5"])
def test_digits_within_the_limits(text: str) -> None:
    assert check_digits("retailPrice", text) == text


@pytest.mark.parametrize(("text", "where"), [
    ("1" * (MAX_INTEGER_DIGITS + 1), "before"),
    ("1" * (MAX_INTEGER_DIGITS + 1) + ".5", "before"),
    ("1." + "1" * (MAX_FRACTION_DIGITS + 1), "after"),
    ("0." + "0" * MAX_FRACTION_DIGITS + "1", "after"),
])
def test_digits_beyond_the_limits(text: str, where: str) -> None:
    with pytest.raises(ValueError, match=f"grams: .* digits {where} the decimal point"):
        check_digits("grams", text)


@pytest.mark.parametrize("notation", ["decimal", "comma"])
def test_price_converter_applies_the_digit_limits(notation: str) -> None:
    convert = price_converter(PRICE, notation)
    assert convert("9" * MAX_INTEGER_DIGITS) == "9" * MAX_INTEGER_DIGITS
    with pytest.raises(ValueError, match="digits before the decimal point"):
        convert("9" * (MAX_INTEGER_DIGITS + 1))
    with pytest.raises(ValueError, match="digits before the decimal point"):
        convert("1" * 5000)
    with pytest.raises(ValueError, match="not a plain number"):
        convert("1e300")
    point = "," if notation == "comma" else "."
    with pytest.raises(ValueError, match="digits after the decimal point"):
        convert("1" + point + "5" * (MAX_FRACTION_DIGITS + 1))


@pytest.mark.parametrize("text", ["1" * 5000, "9" * 11, "12345678901.5", "-99999999999"])
def test_quantity_overflow_is_out_of_range_not_a_crash(text: str) -> None:
    with pytest.raises(ValueError, match=f"{QTY}: .* is out of range"):
        quantity_converter(QTY, "decimal")(text)


def test_whole_refuses_what_would_overflow_rounding() -> None:
    assert whole(QTY, Decimal("2.5"), 2.5) == 3
    assert whole(QTY, Decimal("-0"), -0.0) == 0
    with pytest.raises(ValueError, match="out of range"):
        whole(QTY, Decimal("1e300"), 1e300)


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_times_up_to_the_skew_pass() -> None:
    for t in (NOW, NOW + timedelta(seconds=300), datetime(1900, 1, 1, tzinfo=UTC)):
        assert check_time("inventoryUpdatedAt", t, NOW, 300) == t


@pytest.mark.parametrize(("t", "reason"), [
    (NOW + timedelta(seconds=301), "is more than 300 s in the future"),
    (datetime(9999, 12, 31, tzinfo=UTC), "is more than 300 s in the future"),
    (datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))),
     "is more than 300 s in the future"),
    (datetime(1899, 12, 31, 23, 59, tzinfo=UTC), "is before 1900"),
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "is before 1900"),
])
def test_times_out_of_bounds(t: datetime, reason: str) -> None:
    with pytest.raises(ValueError, match=f"inventoryUpdatedAt: .* {reason}"):
        check_time("inventoryUpdatedAt", t, NOW, 300)


def test_the_quick_look_at_a_json_document() -> None:
    clean = orjson.dumps({"name": "tab\there", "opts": {"k": ["a\\", "caf\u00e9"]}}).decode()
    assert json_within(clean, len(clean))
    assert not json_within(clean, len(clean) - 1)
    for char in CONTROLS:
        assert not json_within(orjson.dumps({"k": [char]}).decode(), 1000), hex(ord(char))


@pytest.mark.parametrize(("text", "notation", "expected"), [
    ("45,00 €", "comma", "45.00"),
    ("€ 45,00", "comma", "45.00"),
    ("1.234,50", "comma", "1234.50"),
    ("1\u00a0234,50 €", "comma", "1234.50"),
    ("1\u202f234,50", "comma", "1234.50"),
    ("$1,299.00", "decimal", "1299.00"),
    ("£ 12.5", "decimal", "12.5"),
    ("1 299.00", "decimal", "1299.00"),
    ("1'299.00", "decimal", "1299.00"),
    ("¥1,000.5 JPY", "decimal", "1000.5"),  # the trailing code is split off first
])
def test_price_symbols_spaces_and_thousands_are_stripped(text: str, notation: str,
                                                         expected: str) -> None:
    assert price_converter(PRICE, notation)(text) == expected


def test_a_symbol_does_not_hide_the_wrong_notation() -> None:
    with pytest.raises(ValueError, match="decimal comma") as info:
        price_converter(PRICE, "decimal")("45,00 €")
    assert "'45,00 €'" in str(info.value)
    with pytest.raises(ValueError, match=r"^retailPrice: '-\$5' is not a plain number"):
        price_converter(PRICE, "decimal")("-$5")  # one symbol, at an end
