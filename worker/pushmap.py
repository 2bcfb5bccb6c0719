"""Pushed variants (JSON objects) -> staging rows with the set of attributes they carry.

An attribute a variant leaves out keeps its stored value; `null` clears it. Attributes
the reference does not name are kept in the item's `extra`. A bad value rejects its
variant only, with the reason; the other variants of the message still land.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import orjson

from worker import values
from worker.model import ATTRIBUTES, COLUMN_BIT, COLUMNS
from worker.rules import Applier
from worker.settings import Settings

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_INDEX = {c: i for i, c in enumerate(COLUMNS)}
_EXTRA_BIT = COLUMN_BIT["extra"]
_CURRENCY_BIT = COLUMN_BIT["currency"]

Check = Callable[[str, Any], "str | None"]


def _text(attr: str, v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v.strip() or None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    raise ValueError(f"{attr}: must be a string, not {type(v).__name__}")


def _amount(attr: str, v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError(f"{attr}: must be a number, not a boolean")
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{attr}: {v!r} is not a non-negative number")
        text = repr(v) if isinstance(v, float) else str(v)
        if "e" in text:  # 1e-05, 1e+300: written out, so that the digit limits see them
            text = format(Decimal(text), "f")
        return values.check_digits(attr, text, v)
    if isinstance(v, str):
        return _PRICE[attr](v)
    raise ValueError(f"{attr}: must be a number, not {type(v).__name__}")


def _quantity(attr: str, v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError(f"{attr}: must be a whole number, not a boolean")
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{attr}: {v!r} is not a whole number")
        n = values.whole(attr, Decimal(repr(v)), v)
    elif isinstance(v, str):
        return _QUANTITY(v)
    else:
        raise ValueError(f"{attr}: must be a whole number, not {type(v).__name__}")
    return str(values.check_int32(attr, n, v))


def _policy(attr: str, v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"{attr}: must be one of {', '.join(sorted(values.INVENTORY_POLICIES))}")
    return _POLICY(v)


def _json_of(kinds: tuple[type, ...]) -> Check:
    def check(attr: str, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, kinds):
            raise ValueError(f"{attr}: must be {' or '.join(k.__name__ for k in kinds)}")
        return orjson.dumps(v).decode()

    return check


_PRICE = {a: values.price_converter(a, "decimal")
          for a in ("retailPrice", "costPrice", "compareAtPrice", "grams")}
_QUANTITY = values.quantity_converter("inventoryQuantity", "decimal")
_POLICY = values.enum_converter("inventoryPolicy", values.INVENTORY_POLICIES)

_CHECKS: dict[str, Check] = {
    "vendorSku": _text, "barcode": _text, "name": _text, "mpn": _text,
    "externalGroupId": _text, "inventoryQuantity": _quantity, "inventoryPolicy": _policy,
    "retailPrice": _amount, "costPrice": _amount, "compareAtPrice": _amount, "grams": _amount,
    "options": _json_of((list, dict)), "images": _json_of((list,)),
    "currency": lambda attr, v: None if v is None else values.currency(str(v)),
}


def parse_time(v: Any) -> datetime | None:
    """inventoryUpdatedAt: ISO 8601; without a zone it is UTC."""
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError("inventoryUpdatedAt: must be an ISO 8601 date-time string")
    try:
        t = datetime.fromisoformat(v.strip())
    except ValueError:
        raise ValueError(f"inventoryUpdatedAt: {v[:60]!r} is not an ISO 8601 date-time") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@dataclass
class Item:
    """One feed item's update: the values it carries (canonical text), its own time
    (inventoryUpdatedAt, stored with the item) and its order time (that time, else its
    message's: see pipeline/push.py), which decides which of two updates is newer."""

    feed_id: int
    external_id: str
    values: list[str | None]
    present: int
    updated_at: datetime | None
    extra: dict[str, Any] = field(default_factory=dict)
    order_at: datetime | None = None
    # the latest variant folded in, where it came from: a value rule's reject names it
    index: int = 0
    message_id: str | None = None
    variant: Any = None

    def absorb(self, later: Item) -> None:
        """Fold a later update of the same item in (the newer by order time wins, else the
        later)."""
        if (later.order_at is not None and self.order_at is not None
                and later.order_at < self.order_at):
            older, newer = later, self
        else:
            older, newer = self, later
        merged = list(older.values)
        for i, bit in enumerate(_BITS):
            if newer.present & bit:
                merged[i] = newer.values[i]
        self.values = merged
        self.extra = {**older.extra, **newer.extra}
        self.present = older.present | newer.present
        self.updated_at = newer.updated_at or older.updated_at
        self.order_at = newer.order_at or older.order_at
        self.index, self.message_id, self.variant = later.index, later.message_id, later.variant

    def copy_line(self) -> str:
        vals = list(self.values)
        if self.extra:
            vals[_INDEX["extra"]] = orjson.dumps(self.extra).decode()
        fields = [str(self.feed_id), self.external_id, str(self.present),
                  *("" if v is None else v for v in vals),
                  "" if self.updated_at is None else self.updated_at.isoformat(),
                  "" if self.order_at is None else self.order_at.isoformat()]
        line = "\t".join(fields)
        if "\\" in line or "\n" in line or "\r" in line or line.count("\t") != len(fields) - 1:
            line = "\t".join(f.translate(_ESCAPES) for f in fields)
        return line


_BITS = [COLUMN_BIT[c] for c in COLUMNS]
_ATTR_SLOT = {a: (_INDEX[c], COLUMN_BIT[c]) for a, c in ATTRIBUTES.items() if c in _INDEX}


def to_item(feed_id: int, variant: Any, message_time: datetime | None,
            settings: Settings) -> Item:
    """A pushed variant as an Item; raises ValueError with the reason to reject it.
    `message_time` orders it when it carries no inventoryUpdatedAt of its own. Its values
    pass the checks pulled ones do (worker.values), with the limits of `settings`."""
    if not isinstance(variant, dict):
        raise ValueError(f"a variant must be an object, not {type(variant).__name__}")
    ext = variant.get("externalId")
    if isinstance(ext, bool) or not isinstance(ext, (str, int)) or not str(ext).strip():
        raise ValueError("externalId is missing or blank")
    _check_texts(variant, settings.max_field_chars)
    vals: list[str | None] = [None] * len(COLUMNS)
    present = 0
    extra: dict[str, Any] = {}
    updated_at = None
    for key, v in variant.items():
        slot = _ATTR_SLOT.get(key)
        if slot is not None:
            i, bit = slot
            vals[i] = _CHECKS[key](key, v)
            present |= bit
        elif key == "inventoryUpdatedAt":
            updated_at = parse_time(v)
            if updated_at is not None:
                values.check_time(key, updated_at, datetime.now(UTC), settings.max_future_skew_s)
        elif key != "externalId":
            extra[key] = v
    if extra:
        present |= _EXTRA_BIT
    if not present & _CURRENCY_BIT:  # a price's own code ("9.99 EUR") is the currency
        for key in ("retailPrice", "costPrice", "compareAtPrice"):
            v = variant.get(key)
            code = values.split_currency(v)[1] if isinstance(v, str) else None
            if code:
                vals[_INDEX["currency"]] = code
                present |= _CURRENCY_BIT
                break
    return Item(feed_id, values.check_key(str(ext).strip()), vals, present, updated_at, extra,
                updated_at or message_time, variant=variant)


_QUANTITY_SLOT = _INDEX["inventory_quantity"]
_QUANTITY_BIT = COLUMN_BIT["inventory_quantity"]
_BARCODE_SLOT = _INDEX["barcode"]
_BARCODE_BIT = COLUMN_BIT["barcode"]


def apply_rules(applier: Applier, items: Sequence[Item]) -> tuple[list[Item], dict[int, str]]:
    """A feed's value rules on its folded items, as the pull mapper applies them (the same
    Applier, on columns made of the items): copies of the items (the originals stay as
    folded, so that a group tried again is ruled again from them) and the rejected ones,
    by position. The quantity sum reads its sources from the attributes the variants
    carried (kept in `extra`: keys, or dotted paths into them); an item that carries none
    of them keeps its own inventoryQuantity, if any."""
    out = [replace(i, values=list(i.values), extra=dict(i.extra)) for i in items]
    bad: dict[int, str] = {}
    rules = applier.rules
    quantity_done: set[int] = set()
    if rules.quantity is not None and rules.quantity.sources:
        quantity_done = _sum_sources(applier, out, bad)

    def quantity(col: Sequence[str], _bad: dict[int, str]) -> Sequence[str]:
        return applier.quantity(col)

    if rules.quantity is not None:
        _column(out, _QUANTITY_SLOT, _QUANTITY_BIT, bad, quantity, skip=quantity_done)
    for attr in sorted(applier.price_attributes):
        i, bit = _ATTR_SLOT[attr]
        _column(out, i, bit, bad, partial(applier.price, attr))
    if rules.barcode is not None:
        _column(out, _BARCODE_SLOT, _BARCODE_BIT, bad, applier.barcode)
    return out, bad


def _column(items: list[Item], slot: int, bit: int, bad: dict[int, str],
            rule: Callable[[Sequence[str], dict[int, str]], Sequence[str]],
            skip: set[int] | None = None) -> None:
    """One rule on the values the items carry in `slot` (blank ones aside)."""
    at = [k for k, item in enumerate(items)
          if item.present & bit and item.values[slot] and k not in bad
          and (skip is None or k not in skip)]
    if not at:
        return
    col = [items[k].values[slot] or "" for k in at]
    mine: dict[int, str] = {}
    new = rule(col, mine)
    for j, k in enumerate(at):
        if j in mine:
            bad[k] = mine[j]
        items[k].values[slot] = new[j] or None


def _sum_sources(applier: Applier, items: list[Item], bad: dict[int, str]) -> set[int]:
    """inventoryQuantity as the sum of the sources each item carries (blank or absent: 0),
    the locations in extra.locations when the rule keeps them; which items it set."""
    rule = applier.rules.quantity
    assert rule is not None
    sources = [(name, src) for name, src in rule.sources if isinstance(src, str)]
    if not sources:
        return set()
    found: list[list[Any]] = []
    at: list[int] = []
    for k, item in enumerate(items):
        got = [_lookup(item.extra, src) for _, src in sources]
        if any(v is not _ABSENT for v in got):
            at.append(k)
            found.append(got)
    cols: list[list[str]] = [[] for _ in sources]
    for k, got in zip(at, found, strict=True):
        for col, (name, _), v in zip(cols, sources, got, strict=True):
            try:
                col.append(_quantity(f"inventoryQuantity ({name})",
                                     None if v is _ABSENT else v) or "")
            except ValueError as exc:
                bad.setdefault(k, str(exc))
                col.append("")
    out_of_range: dict[int, str] = {}
    totals, places = applier.quantity_sum(cols, [name for name, _ in sources], out_of_range)
    for j, why in out_of_range.items():
        bad.setdefault(at[j], why)
    for j, k in enumerate(at):
        item = items[k]
        item.values[_QUANTITY_SLOT] = totals[j] or None
        item.present |= _QUANTITY_BIT
        for _, src in sources:  # the sources are the quantity now, not extra attributes
            item.extra.pop(src, None)
        if places is not None and places[j]:
            item.extra["locations"] = places[j]
        if not item.extra:
            item.present &= ~_EXTRA_BIT
    return set(at)


_ABSENT = object()


def _lookup(extra: dict[str, Any], path: str) -> Any:
    """The value at a key or dotted path of a variant's extra attributes, or _ABSENT."""
    if path in extra:
        return extra[path]
    value: Any = extra
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return _ABSENT
        value = value[step]
    return value


_NAMED = {*_ATTR_SLOT, "externalId", "inventoryUpdatedAt"}


def _check_texts(variant: dict[str, Any], cap: int) -> None:
    """Control characters and the field-size cap for every value of a variant (strings;
    the JSON text of objects and arrays) and for the names of its extra attributes. One
    look at the variant's JSON text vouches for them all; value by value only to name the
    one at fault."""
    if values.json_within(orjson.dumps(variant).decode(), cap):
        return
    for key, v in variant.items():
        if key not in _NAMED:
            values.check_text("an attribute name", key, cap)
        if v.__class__ is str:
            values.check_text(key, v, cap)
        elif isinstance(v, (list, dict)):
            values.check_json_text(key, orjson.dumps(v).decode(), cap)
