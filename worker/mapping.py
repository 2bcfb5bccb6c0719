"""Feed records -> rows for the staging table, or rejects with a reason.

A feed's `mapping.fields` names, for each target attribute (the reference's camelCase
names), the source column: a header name or a 0-based index. Targets it does not name are
found by the template's column names (external_id, vendor_sku, qty, ...) whatever their
case. Only the attributes a feed maps are written: the others keep their stored values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker import values
from worker.errors import FeedError

# Staging/target columns after external_id, in COPY order; a bit each in the merge's mask.
COLUMNS: tuple[str, ...] = (
    "vendor_sku", "barcode", "name", "inventory_quantity", "inventory_policy",
    "retail_price", "cost_price", "compare_at_price", "grams", "mpn",
    "external_group_id", "options", "images", "extra",
)
COLUMN_BIT = {c: 1 << i for i, c in enumerate(COLUMNS)}

# camelCase attribute -> column, for the attributes that have a column of their own.
ATTRIBUTES: dict[str, str] = {
    "externalId": "external_id", "vendorSku": "vendor_sku", "barcode": "barcode",
    "name": "name", "inventoryQuantity": "inventory_quantity",
    "inventoryPolicy": "inventory_policy", "retailPrice": "retail_price",
    "costPrice": "cost_price", "compareAtPrice": "compare_at_price", "grams": "grams",
    "mpn": "mpn", "externalGroupId": "external_group_id", "options": "options",
    "images": "images",
}
# Template attributes kept in `extra` (jsonb) when a feed has them.
EXTRA_ATTRIBUTES = ("description", "productType", "handle", "tags", "vendorName",
                    "countryOfOrigin", "hsCode", "externalUrl")
# Other header spellings that map by themselves (compared normalised, see _norm).
ALIASES: dict[str, str] = {"qty": "inventoryQuantity", "quantity": "inventoryQuantity",
                           "sku": "vendorSku", "title": "name"}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


_AUTO: dict[str, str] = {_norm(a): a for a in (*ATTRIBUTES, *EXTRA_ATTRIBUTES)}
_AUTO.update(ALIASES)


@dataclass
class Reject:
    position: int
    raw: str
    reason: str


@dataclass
class MappedBatch:
    rows: list[list[object]] = field(default_factory=list)  # [position, external_id, ...]
    rejects: list[Reject] = field(default_factory=list)


class Mapper:
    """Turns parsed CSV rows into staging rows; built once per run from header + mapping."""

    def __init__(self, mapping: Mapping[str, Any], header: Sequence[str] | None,
                 decimal_notation: str = "decimal", delimiter: str = ",") -> None:
        self.delimiter = delimiter
        self.width = len(header) if header is not None else None
        targets = _resolve(mapping.get("fields") or {}, header)
        if "externalId" not in targets:
            if header is None:
                raise FeedError("the feed has no header row: mapping.fields must give the "
                                "0-based column of externalId (and the other attributes)")
            raise FeedError("no column for externalId: map it in mapping.fields or name a "
                            f"column external_id (header: {_show(header)})")
        self.ext_index = targets.pop("externalId")
        self._specs: list[tuple[int, values.Converter | None]] = []
        self._extra: list[tuple[str, int]] = []
        self.columns: list[str] = []
        dn = decimal_notation
        values_maps: dict[str, dict[str, str]] = {
            attr: {str(k).strip().lower(): _text(v) for k, v in vm.items()}
            for attr, vm in (mapping.get("values") or {}).items()
        }
        for attr, index in targets.items():
            if attr in EXTRA_ATTRIBUTES:
                self._extra.append((attr, index))
                continue
            col = ATTRIBUTES[attr]
            conv: values.Converter | None
            if col in ("retail_price", "cost_price", "compare_at_price", "grams"):
                conv = values.price_converter(attr, dn)
            elif col == "inventory_quantity":
                conv = values.quantity_converter(attr, dn)
            elif col == "inventory_policy":
                conv = values.enum_converter(attr, values.INVENTORY_POLICIES)
            elif col in ("vendor_sku", "barcode", "mpn", "external_group_id"):
                conv = values.stripped
            elif col == "options":
                conv = _json_value(attr)
            elif col == "images":
                conv = _images
            else:
                conv = None
            value_map = values_maps.get(attr)
            if value_map is not None:
                conv = _mapped(value_map, conv)
            self.columns.append(col)
            self._specs.append((index, conv))
        if self._extra:
            self.columns.append("extra")
        self.mask = sum(COLUMN_BIT[c] for c in self.columns)
        self.source = {"externalId": self.ext_index, **targets}

    def map(self, rows: list[list[str]], lines: list[int]) -> MappedBatch:
        out = MappedBatch()
        good, bad = out.rows, out.rejects
        width, ext_i, specs, extra = self.width, self.ext_index, self._specs, self._extra
        for row, line in zip(rows, lines, strict=True):
            if width is not None and len(row) != width:
                bad.append(Reject(line, self._raw(row),
                                  f"expected {width} columns, found {len(row)}"))
                continue
            try:
                ext = row[ext_i].strip()
                if not ext:
                    raise ValueError("externalId is blank")
                rec: list[object] = [line, ext]
                for i, conv in specs:
                    v = row[i]
                    rec.append(v if conv is None else conv(v))
                if extra:
                    rec.append(orjson.dumps({a: row[i] for a, i in extra if row[i]}).decode())
            except ValueError as exc:
                bad.append(Reject(line, self._raw(row), str(exc)))
                continue
            except IndexError:
                bad.append(Reject(line, self._raw(row),
                                  f"row has {len(row)} columns; the mapping reads column "
                                  f"{max(self.source.values())}"))
                continue
            good.append(rec)
        return out

    def _raw(self, row: Sequence[str]) -> str:
        return self.delimiter.join(row)


def _resolve(fields: Mapping[str, Any], header: Sequence[str] | None) -> dict[str, int]:
    """target attribute -> column index, from explicit fields then template names."""
    targets: dict[str, int] = {}
    for attr, src in fields.items():
        if attr not in ATTRIBUTES and attr not in EXTRA_ATTRIBUTES:
            raise FeedError(f"mapping.fields names an unknown attribute {attr!r}")
        targets[attr] = _column(attr, src, header)
    if header is not None:
        taken = set(targets.values())
        for i, name in enumerate(header):
            auto = _AUTO.get(_norm(name))
            if auto and auto not in targets and i not in taken:
                targets[auto] = i
                taken.add(i)
    return targets


def _column(attr: str, src: Any, header: Sequence[str] | None) -> int:
    if isinstance(src, bool) or not isinstance(src, (int, str)):
        raise FeedError(f"mapping.fields.{attr} must be a column name or a 0-based index")
    if isinstance(src, int) or (header is None and src.isdigit()):
        index = int(src)
        if index < 0 or (header is not None and index >= len(header)):
            raise FeedError(f"mapping.fields.{attr}: column index {index} is out of range")
        return index
    if header is None:
        raise FeedError(f"mapping.fields.{attr} names column {src!r} but the feed has no "
                        "header row: use a 0-based index")
    if src in header:
        return list(header).index(src)
    folded = [h.strip().lower() for h in header]
    if src.strip().lower() in folded:
        return folded.index(src.strip().lower())
    raise FeedError(f"mapped column {src!r} ({attr}) is not in the header: {_show(header)}")


def _show(header: Sequence[str]) -> str:
    shown = ", ".join(repr(h) for h in header[:30])
    return shown + (", ..." if len(header) > 30 else "")


def _text(v: Any) -> str:
    return "" if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()


def _mapped(value_map: dict[str, str], conv: values.Converter | None) -> values.Converter:
    """Source text -> the value the feed's value map gives it (compared trimmed, any case)."""

    def convert(v: str) -> object:
        mapped = value_map.get(v.strip().lower(), v)
        return mapped if conv is None else conv(mapped)

    return convert


def _json_value(attr: str) -> values.Converter:
    def convert(v: str) -> object:
        if not v.strip():
            return None
        try:
            return orjson.dumps(orjson.loads(v)).decode()
        except orjson.JSONDecodeError:
            raise ValueError(f"{attr}: not valid JSON") from None

    return convert


def _images(v: str) -> object:
    s = v.strip()
    if not s:
        return None
    if s.startswith("["):
        try:
            parsed = orjson.loads(s)
        except orjson.JSONDecodeError:
            raise ValueError("images: not a valid JSON array") from None
        return orjson.dumps(parsed).decode()
    return orjson.dumps([u for u in re.split(r"[\s,]+", s) if u]).decode()
