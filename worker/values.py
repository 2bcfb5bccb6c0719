"""Value rules for feed attributes: whole-number quantities, plain-number prices, enums.

Each converter takes the source text and returns the canonical text that Postgres will
parse (or None for a blank), or raises ValueError with a reason fit for a reject.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from worker.parsers import field_cap_reason

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


# Currency symbols (Unicode category Sc: $ € £ ¥ ₹ ...).
_SC = frozenset(chr(c) for c in range(0x24, 0x10000) if unicodedata.category(chr(c)) == "Sc")
_BLANKS = " \t\u00a0\u202f\u2009"
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "'": " "})
_SPACED_POINT = re.compile(r"[+-]?[0-9]{1,3}(?: [0-9]{3})+(?:\.[0-9]+)?")


def price_text(v: str, decimal_notation: str) -> str:
    """A price as suppliers write it, as a plain number's text: a currency symbol before or
    after the number and the spaces around it stripped ('45,00 €', '$1,299.00', '£ 12');
    spaces, no-break spaces and apostrophes between thousands ('1 234,50', "1'299.00")
    made plain for number_parser, which reads the separators of the feed's notation."""
    s = v.strip(_BLANKS)
    if s[:1] in _SC:  # one symbol, before or after the number
        s = s[1:].lstrip(_BLANKS)
    elif s[-1:] in _SC:
        s = s[:-1].rstrip(_BLANKS)
    if " " in s or "'" in s or not s.isascii():
        s = s.translate(_SPACES)
        if decimal_notation != "comma" and _SPACED_POINT.fullmatch(s):
            s = s.replace(" ", "")
    return s


def price_converter(attr: str, decimal_notation: str) -> Converter:
    """Plain numbers in the feed's notation; a trailing currency code ('105.29 USD') is
    accepted (the mapper keeps it as the item's currency), and so are currency symbols and
    thousands separators ('45,00 €', '$1,299.00'); any other text is a reject."""
    parse = number_parser(decimal_notation)

    def convert(v: str) -> str | None:
        if not v or v.isspace():
            return None
        v = split_currency(v)[0]
        try:
            s = parse(v)
        except ValueError as exc:
            s = price_text(v, decimal_notation)
            if s == v.strip():
                raise ValueError(f"{attr}: {exc}") from None
            try:
                s = parse(s)
            except ValueError as again:  # named as given, not as cleaned
                why = str(again).replace(repr(s), repr(v.strip()), 1)
                raise ValueError(f"{attr}: {why}") from None
        if s.startswith("-") and s.strip("-0.") != "":
            raise ValueError(f"{attr}: {v!r} is negative")
        return check_digits(attr, s)

    return convert


def quantity_converter(attr: str, decimal_notation: str) -> Converter:
    """Whole numbers; decimals are rounded to the nearest whole number (half away from 0)."""
    parse = number_parser(decimal_notation)

    def convert(v: str) -> str | None:
        if not v or v.isspace():
            return None
        try:
            n = int(v)
        except ValueError:  # a decimal, or more digits than int() reads
            try:
                d = Decimal(parse(v))
            except (ValueError, InvalidOperation):
                raise ValueError(f"{attr}: {_short(v)} is not a whole number") from None
            n = whole(attr, d, v)
        return str(check_int32(attr, n, v))

    return convert


def whole(attr: str, d: Decimal, shown: object) -> int:
    """A finite decimal rounded to a whole number (half away from zero), refused when it is
    out of the integer range (before rounding it would exceed the arithmetic's precision)."""
    if d.is_finite() and d.adjusted() >= 10:
        raise ValueError(f"{attr}: {_short(shown)} is out of range")
    return int(d.quantize(Decimal(1), rounding=ROUND_HALF_UP))


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


# -- checks shared by pushed and pulled values ----------------------------------------------
# Postgres would refuse these inside the COPY or the merge and fail the whole run or push
# group; checked here, each rejects only its own row or variant.

# externalId is the unique btree key (inventory_feed_id, external_id) of items and of
# provider_daily_items; btree entries must fit a third of a page.
MAX_KEY_BYTES = 1000
# A key this short (in characters) is within MAX_KEY_BYTES whatever its characters.
KEY_CHARS_ALWAYS_FIT = MAX_KEY_BYTES // 4
MAX_INTEGER_DIGITS = 15   # of a price or grams, before the decimal point
MAX_FRACTION_DIGITS = 30  # ... and after it
MIN_YEAR = 1900           # of a pushed inventoryUpdatedAt

# C0 controls but tab, LF and CR, and DEL: text columns must not hold them (NUL cannot be
# stored at all).
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_CONTROL = re.compile("[" + re.escape(_CONTROL_BYTES.decode()) + "]")
# The same characters in JSON text as orjson writes it: \u00XX, \b or \f (escaped
# backslashes are matched as pairs so that the text after one is not read as an escape).
_JSON_CONTROL = re.compile(r"\\(?:u00[01][0-9a-fA-F]|u007[fF]|[bf])|\x7f|\\\\")
_JSON_HINT = re.compile(r"\\[ubf]")
_JSON_SHORT = {"\\b": "\x08", "\\f": "\x0c"}


def has_controls(text: str) -> bool:
    """Whether `text` holds a character check_controls refuses: a quicker look than the
    regular expression over a whole batch (in UTF-8 these bytes stand only for themselves)."""
    b = text.encode("utf-8", "surrogatepass")
    return len(b.translate(None, _CONTROL_BYTES)) != len(b)


def check_size(attr: str, v: str, max_chars: int) -> None:
    """A value longer than FEED_WORKER_MAX_FIELD_CHARS, with the parsers' reason."""
    if len(v) > max_chars:
        raise ValueError(field_cap_reason(attr, len(v), max_chars))


def check_controls(attr: str, v: str) -> None:
    """NUL and the other control characters (tab, LF and CR aside)."""
    m = _CONTROL.search(v)
    if m is not None:
        raise ValueError(_control_reason(attr, m.group()))


def check_json_controls(attr: str, json_text: str) -> None:
    """check_controls for every string (keys too) inside JSON text orjson wrote."""
    if not _may_hold_controls(json_text):
        return
    for m in _JSON_CONTROL.finditer(json_text):
        esc = m.group()
        if esc != "\\\\":
            char = _JSON_SHORT.get(esc) or (esc if len(esc) == 1 else chr(int(esc[2:], 16)))
            raise ValueError(_control_reason(attr, char))


def _may_hold_controls(json_text: str) -> bool:
    # Most documents have no backslash at all: one quick scan for it first.
    return "\x7f" in json_text or ("\\" in json_text and _JSON_HINT.search(json_text) is not None)


def json_within(json_text: str, max_chars: int) -> bool:
    """A quick look at a whole JSON document orjson wrote: True when it is within the cap
    and holds no control character, so that every string and JSON value inside it passes
    check_text and check_json_text; False when they must be looked at one by one."""
    return len(json_text) <= max_chars and not _may_hold_controls(json_text)


def check_text(attr: str, v: str, max_chars: int) -> None:
    check_size(attr, v, max_chars)
    check_controls(attr, v)


def check_json_text(attr: str, json_text: str, max_chars: int) -> None:
    check_size(attr, json_text, max_chars)
    check_json_controls(attr, json_text)


def _control_reason(attr: str, char: str) -> str:
    return f"{attr}: contains control character U+{ord(char):04X}"


def check_key(v: str) -> str:
    """An externalId (already trimmed) that fits the items' unique index."""
    if len(v) > KEY_CHARS_ALWAYS_FIT:
        size = len(v.encode())
        if size > MAX_KEY_BYTES:
            raise ValueError(f"externalId is {size} bytes long (UTF-8), over the "
                             f"{MAX_KEY_BYTES}-byte limit of an item key")
    return v


def keys_fit(col: Sequence[str]) -> bool:
    """Whether every (trimmed) key of a column is within MAX_KEY_BYTES, cheaply."""
    if max(map(len, col), default=0) <= KEY_CHARS_ALWAYS_FIT:
        return True
    return all(len(v) <= KEY_CHARS_ALWAYS_FIT or len(v.encode()) <= MAX_KEY_BYTES for v in col)


def check_digits(attr: str, plain: str, shown: object = None) -> str:
    """A plain number's text (as number_parser gives it) within the digits a price or grams
    may have: beyond them Postgres' numeric overflows or the value is no real amount.
    `shown` is the value as given, for the reason (default: `plain`)."""
    if len(plain) <= MAX_INTEGER_DIGITS:  # the usual case: too short to break either limit
        return plain
    integer, _, fraction = plain.lstrip("+-").partition(".")
    given = _short(plain if shown is None else shown)
    if len(integer.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"{attr}: {given} has more than {MAX_INTEGER_DIGITS} digits "
                         "before the decimal point")
    if len(fraction.rstrip("0")) > MAX_FRACTION_DIGITS:
        raise ValueError(f"{attr}: {given} has more than {MAX_FRACTION_DIGITS} digits "
                         "after the decimal point")
    return plain


def check_int32(attr: str, n: int, shown: object) -> int:
    if not -INT32 <= n < INT32:
        raise ValueError(f"{attr}: {_short(shown)} is out of range")
    return n


def check_time(attr: str, t: datetime, now: datetime, max_future_skew_s: float) -> datetime:
    """A time stamp (with its zone) neither before MIN_YEAR nor further than the allowed
    skew in the future: an item stamped years ahead would refuse every later update."""
    if t.year < MIN_YEAR:
        raise ValueError(f"{attr}: {t.isoformat()} is before {MIN_YEAR}")
    if (t - now).total_seconds() > max_future_skew_s:
        raise ValueError(f"{attr}: {t.isoformat()} is more than {max_future_skew_s:g} s in "
                         "the future (FEED_WORKER_MAX_FUTURE_SKEW_S)")
    return t


def _short(v: object) -> str:
    """repr of a value for a reason, cut to a readable length."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."
