"""Value rules for feed attributes: whole-number quantities, plain-number prices, enums.

Each converter takes the source text and returns the canonical text that Postgres will
parse (or None for a blank), or raises ValueError with a reason fit for a reject.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

Converter = Callable[[str], "str | None"]

INT32 = 2**31
INVENTORY_POLICIES = frozenset({"track", "continue", "deny", "ignore", "dropship"})

_DEC_POINT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DEC_POINT_THOUSANDS = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+\.[0-9]+")
_DEC_COMMA = re.compile(r"[+-]?(?:[0-9]+(?:,[0-9]*)?|,[0-9]+)")
_DEC_COMMA_THOUSANDS = re.compile(r"[+-]?[0-9]{1,3}(?:[. ][0-9]{3})+(?:,[0-9]+)?")


def number_parser(decimal_notation: str) -> Callable[[str], str]:
    """Text of a plain decimal number in the feed's notation -> Postgres numeric text."""
    comma = decimal_notation == "comma"
    sep = "," if comma else "."

    def parse(v: str) -> str:
        s = v.strip()
        if s.isascii() and s.replace(sep, "", 1).isdigit():  # fast path: 12.34 / 12,34
            return s.replace(",", ".") if comma else s
        if comma:
            if _DEC_COMMA.fullmatch(s):
                return s.replace(",", ".")
            if _DEC_COMMA_THOUSANDS.fullmatch(s):
                return s.replace(".", "").replace(" ", "").replace(",", ".")
        else:
            if _DEC_POINT.fullmatch(s):
                return s
            if _DEC_POINT_THOUSANDS.fullmatch(s):
                return s.replace(",", "")
            if _DEC_COMMA.fullmatch(s):
                raise ValueError(f"{v!r} has a decimal comma but the feed's notation is 'decimal'")
        raise ValueError(f"{v!r} is not a plain number")

    return parse


_CURRENCY_SUFFIX = re.compile(r"(.*?\S)\s*([A-Z]{3})")


def split_currency(v: str) -> tuple[str, str | None]:
    """'105.29 USD' -> ('105.29', 'USD'): a trailing ISO 4217-style code, if any."""
    if not v.rstrip()[-1:].isalpha():  # the usual case, without the regex
        return v, None
    m = _CURRENCY_SUFFIX.fullmatch(v.strip())
    return (m.group(1), m.group(2)) if m else (v, None)


def price_converter(attr: str, decimal_notation: str) -> Converter:
    """Plain numbers in the feed's notation; a trailing currency code ('105.29 USD') is
    accepted (the mapper keeps it as the item's currency); any other text is a reject."""
    parse = number_parser(decimal_notation)

    def convert(v: str) -> str | None:
        if not v or v.isspace():
            return None
        v = split_currency(v)[0]
        try:
            s = parse(v)
        except ValueError as exc:
            raise ValueError(f"{attr}: {exc}") from None
        if s.startswith("-") and s.strip("-0.") != "":
            raise ValueError(f"{attr}: {v!r} is negative")
        return s

    return convert


def quantity_converter(attr: str, decimal_notation: str) -> Converter:
    """Whole numbers; decimals are rounded to the nearest whole number (half away from 0)."""
    parse = number_parser(decimal_notation)

    def convert(v: str) -> str | None:
        if not v or v.isspace():
            return None
        try:
            n = int(v)
        except ValueError:
            try:
                n = int(Decimal(parse(v)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            except (ValueError, InvalidOperation):
                raise ValueError(f"{attr}: {v!r} is not a whole number") from None
        if not -INT32 <= n < INT32:
            raise ValueError(f"{attr}: {v!r} is out of range")
        return str(n)

    return convert


def enum_converter(attr: str, allowed: frozenset[str]) -> Converter:
    def convert(v: str) -> str | None:
        s = v.strip().lower()
        if not s:
            return None
        if s not in allowed:
            raise ValueError(f"{attr}: {v!r} is not one of {', '.join(sorted(allowed))}")
        return s

    return convert


def currency(v: str) -> str | None:
    s = v.strip().upper()
    if not s:
        return None
    if len(s) != 3 or not s.isascii() or not s.isalpha():
        raise ValueError(f"currency: {v!r} is not a three-letter ISO 4217 code")
    return s


def stripped(v: str) -> str | None:
    return v.strip() or None


def text(v: str) -> str | None:
    return v or None
