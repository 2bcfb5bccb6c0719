"""How one source column becomes one staging column: each target attribute's converter
(value by value, raising ValueError with the reason for a reject) and, where it can vouch
for a whole column at once, a fast check over the joined values; COPY's escaping."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from worker import values
from worker.model import ATTRIBUTES

SEP = "\x1f"  # joins a column's values for the whole-column checks
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

Fast = Callable[[Sequence[str]], "Sequence[str] | None"]

@dataclass(frozen=True)
class Rule:
    """How one source column becomes one staging column."""

    attr: str
    index: int
    convert: values.Converter   # value by value; raises ValueError with the reason
    fast: Fast | None = None    # the whole column at once, or None when it cannot vouch
    blank_is_null: bool = True  # a blank value converts to NULL (not externalId's, nor
                                # through a value map, which may give "" a value)


def rule_for(attr: str, index: int, decimal_notation: str) -> Rule:
    col = ATTRIBUTES[attr]
    if col == "external_id":
        return Rule(attr, index, _external_id, _fast_external_id, blank_is_null=False)
    if col in ("retail_price", "cost_price", "compare_at_price", "grams"):
        return Rule(attr, index, values.price_converter(attr, decimal_notation),
                     _fast_number("," if decimal_notation == "comma" else "."))
    if col == "inventory_quantity":
        return Rule(attr, index, values.quantity_converter(attr, decimal_notation),
                     fast_quantity)
    if col == "inventory_policy":
        return Rule(attr, index, values.enum_converter(attr, values.INVENTORY_POLICIES))
    if col in ("vendor_sku", "barcode", "mpn", "external_group_id"):
        return Rule(attr, index, values.stripped, _fast_strip)
    if col == "options":
        return Rule(attr, index, _json_value(attr))
    if col == "images":
        return Rule(attr, index, _images)
    if col == "currency":
        return Rule(attr, index, values.currency)
    return Rule(attr, index, values.text, _as_is)


def _as_is(col: Sequence[str]) -> Sequence[str]:
    return col


def _external_id(v: str) -> str | None:
    s = v.strip()
    if not s:
        raise ValueError("externalId is blank")
    return values.check_key(s)


def _fast_external_id(col: Sequence[str]) -> Sequence[str] | None:
    stripped = tuple(map(str.strip, col))
    if "" in stripped or not values.keys_fit(stripped):
        return None  # value by value, for the rejects
    return col if stripped == tuple(col) else stripped


def fast_quantity(col: Sequence[str]) -> Sequence[str] | None:
    """Plain whole numbers (or blanks) of up to 9 digits: they fit an integer as they are."""
    joined = SEP.join(col)
    if (joined.isascii() and joined.replace(SEP, "").isdigit() and max(map(len, col)) <= 9
            and joined.count(SEP) == len(col) - 1):
        return col
    return None


def _fast_number(sep: str) -> Fast:
    two = re.compile(re.escape(sep) + "[0-9]*" + re.escape(sep))

    def fast(col: Sequence[str]) -> Sequence[str] | None:
        """Plain non-negative decimals (or blanks) in the feed's notation, short enough to be
        within the digit limits."""
        joined = SEP.join(col)
        if (joined.isascii() and joined.replace(sep, "").replace(SEP, "").isdigit()
                and not two.search(joined) and sep not in col
                and joined.count(SEP) == len(col) - 1
                and max(map(len, col)) <= values.MAX_INTEGER_DIGITS):
            return joined.replace(",", ".").split(SEP) if sep == "," else col
        return None

    return fast


def _fast_strip(col: Sequence[str]) -> Sequence[str]:
    stripped = tuple(map(str.strip, col))
    return col if stripped == tuple(col) else stripped


def check_controls(attr: str, col: Sequence[str], bad: dict[int, str]) -> bool:
    """Marks the values of a column that hold a control character; whether any did."""
    if not values.has_controls("".join(col)):
        return False
    for i, v in enumerate(col):
        try:
            values.check_controls(attr, v)
        except ValueError as exc:
            bad.setdefault(i, str(exc))
    return True


def copy_text(col: Sequence[str]) -> Sequence[str]:
    """Values for COPY's text format (blanks stay empty: the merge reads them as NULL)."""
    joined = "".join(col)
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        return [v.translate(_ESCAPES) for v in col]
    return col


def mapped_through(value_map: Mapping[str, str], convert: values.Converter) -> values.Converter:
    """Source text -> the value the feed's value map gives it (compared trimmed, any case)."""

    def mapped(v: str) -> str | None:
        return convert(value_map.get(v.strip().lower(), v))

    return mapped


def _json_value(attr: str) -> values.Converter:
    def convert(v: str) -> str | None:
        if not v.strip():
            return None
        try:
            text = orjson.dumps(orjson.loads(v)).decode()
        except orjson.JSONDecodeError:
            raise ValueError(f"{attr}: not valid JSON") from None
        values.check_json_controls(attr, text)
        return text

    return convert


def _images(v: str) -> str | None:
    s = v.strip()
    if not s:
        return None
    if s.startswith("["):
        try:
            parsed = orjson.loads(s)
        except orjson.JSONDecodeError:
            raise ValueError("images: not a valid JSON array") from None
        text = orjson.dumps(parsed).decode()
        values.check_json_controls("images", text)
        return text
    return orjson.dumps([u for u in re.split(r"[\s,]+", s) if u]).decode()
