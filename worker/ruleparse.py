"""A feed's value rules as written in its mapping (`mapping.rules`), read into the typed
rules of worker/model.py with a precise reason for whatever is wrong (called by
feedmapping.parse_mapping); worker/rules.py applies them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from worker import values
from worker.errors import FeedError
from worker.model import BarcodeRule, PriceRule, QuantityRule, Rules
from worker.rules import GTIN_MODES, PRICE_ATTRIBUTES, ROUNDINGS


def parse_rules(raw: Any, sources: str) -> Rules:
    """mapping.rules (absent: no rules). `sources` says what quantity.sum may name:
    "csv" (header names or 0-based indexes), "csv-index" (indexes only: no header row),
    "push" (keys or dotted paths of a pushed variant), "paths" (an XML feed's XPaths or a
    JSON feed's dotted paths, relative to the record, as its fields are)."""
    if raw is None:
        return Rules()
    if not isinstance(raw, dict):
        raise FeedError("mapping.rules must be an object with price, quantity or barcode")
    unknown = set(raw) - {"price", "quantity", "barcode"}
    if unknown:
        raise FeedError(f"mapping.rules has unknown keys {sorted(unknown)}: "
                        "use price, quantity, barcode")
    price = _price(raw["price"]) if raw.get("price") is not None else None
    quantity = _quantity(raw["quantity"], sources) if raw.get("quantity") is not None else None
    barcode = _barcode(raw["barcode"]) if raw.get("barcode") is not None else None
    return Rules(price, quantity, barcode)


def _object(v: Any, what: str, keys: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise FeedError(f"{what} must be an object")
    unknown = set(v) - set(keys)
    if unknown:
        raise FeedError(f"{what} has unknown keys {sorted(unknown)}: use {', '.join(keys)}")
    return v


def _decimal(v: Any, what: str, signed: bool = False) -> Decimal | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise FeedError(f"{what} must be a number")
    try:
        d = Decimal(repr(v) if isinstance(v, float) else str(v).strip())
    except InvalidOperation:
        raise FeedError(f"{what} {v!r} is not a number") from None
    if not d.is_finite() or (d < 0 and not signed) or d.adjusted() >= 15:
        raise FeedError(f"{what} {v!r} must be a finite number"
                        + ("" if signed else " of at least 0") + " below 10^15")
    return Decimal(format(d, "f"))


def _whole(v: Any, what: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < values.INT32:
        raise FeedError(f"{what} must be a whole number of at least 0")
    return v


def _price(v: Any) -> PriceRule:
    what = "mapping.rules.price"
    p = _object(v, what, ("attributes", "markupPercent", "markupAmount", "rounding",
                          "min", "max"))
    attrs = p.get("attributes", ["retailPrice"])
    if (not isinstance(attrs, list) or not attrs
            or any(a not in PRICE_ATTRIBUTES for a in attrs)):
        raise FeedError(f"{what}.attributes must list some of {', '.join(PRICE_ATTRIBUTES)}")
    percent = _decimal(p.get("markupPercent"), f"{what}.markupPercent", signed=True)
    if percent is not None and percent <= -100:
        raise FeedError(f"{what}.markupPercent {p['markupPercent']!r} must be above -100")
    rounding = p.get("rounding", "none")
    if rounding not in ROUNDINGS:
        raise FeedError(f"{what}.rounding {rounding!r}: use one of "
                        + ", ".join(f'"{r}"' for r in ROUNDINGS))
    low = _decimal(p.get("min"), f"{what}.min")
    high = _decimal(p.get("max"), f"{what}.max")
    if low is not None and high is not None and low > high:
        raise FeedError(f"{what}.min ({low}) is above {what}.max ({high})")
    return PriceRule(tuple(dict.fromkeys(attrs)), percent or None,
                     _decimal(p.get("markupAmount"), f"{what}.markupAmount", signed=True)
                     or None, rounding, low, high)


def _quantity(v: Any, sources: str) -> QuantityRule:
    what = "mapping.rules.quantity"
    q = _object(v, what, ("sum", "locations", "below", "buffer", "cap"))
    named = _sources(q.get("sum"), f"{what}.sum", sources)
    locations = q.get("locations", False)
    if not isinstance(locations, bool):
        raise FeedError(f"{what}.locations must be true or false")
    if locations and not named:
        raise FeedError(f"{what}.locations needs {what}.sum (the locations' quantities)")
    return QuantityRule(named, locations, _whole(q.get("below"), f"{what}.below"),
                        _whole(q.get("buffer"), f"{what}.buffer"),
                        _whole(q.get("cap"), f"{what}.cap"))


def _sources(v: Any, what: str, sources: str) -> tuple[tuple[str, int | str], ...]:
    """[source, ...] (each its own location name) or {location: source}."""
    if v is None:
        return ()
    pairs: list[tuple[Any, Any]]
    if isinstance(v, list):
        pairs = [(str(s), s) for s in v]
    elif isinstance(v, dict):
        pairs = list(v.items())
    else:
        raise FeedError(f"{what} must be a list of sources or an object location -> source")
    if not pairs:
        raise FeedError(f"{what} must name at least one source")
    out: list[tuple[str, int | str]] = []
    for name, src in pairs:
        if isinstance(src, bool) or not isinstance(src, (int, str)) or src == "":
            raise FeedError(f"{what}: {src!r} is not a column name, index or path")
        if sources == "paths":
            if not isinstance(src, str) or not src.strip():
                raise FeedError(f"{what}: {src!r} is not a path")
            src = src.strip()
        elif sources == "push":
            if isinstance(src, int):
                raise FeedError(f"{what}: {src!r}: a pushed variant's sources are keys or "
                                "dotted paths")
            if "" in src.strip().split("."):
                raise FeedError(f"{what}: {src!r} is not a key or dotted path")
            src = src.strip()
        elif isinstance(src, int) or (sources == "csv-index" and src.isdigit()):
            src = int(src)
            if src < 0:
                raise FeedError(f"{what}: column index {src} is out of range")
        elif sources == "csv-index":
            raise FeedError(f"{what} names column {src!r} but the feed has no header row: "
                            "use 0-based indexes")
        out.append((str(name), src))
    names = [n for n, _ in out]
    if len(set(names)) != len(names) or len({s for _, s in out}) != len(out):
        raise FeedError(f"{what} names a location or a source twice")
    return tuple(out)


def _barcode(v: Any) -> BarcodeRule:
    b = _object(v, "mapping.rules.barcode", ("gtin",))
    gtin = b.get("gtin", "reject")
    if gtin not in GTIN_MODES:
        raise FeedError(f"mapping.rules.barcode.gtin {gtin!r}: use \"reject\", \"warn\" "
                        "or \"off\"")
    return BarcodeRule(gtin)
