"""Feed items as the API shows them (camelCase, as the reference names them)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

# column -> field; attributes kept in `extra` are shown beside them, as they were pushed.
SHOWN: dict[str, str] = {
    "id": "id", "inventory_feed_id": "inventoryFeedId", "external_id": "externalId",
    "vendor_sku": "vendorSku", "barcode": "barcode", "name": "name",
    "inventory_quantity": "inventoryQuantity", "inventory_policy": "inventoryPolicy",
    "retail_price": "retailPrice", "cost_price": "costPrice",
    "compare_at_price": "compareAtPrice", "grams": "grams", "mpn": "mpn",
    "external_group_id": "externalGroupId", "options": "options", "images": "images",
    "currency": "currency", "variant_id": "variantId",
    "inventory_updated_at": "inventoryUpdatedAt",
    "inventory_quantity_override": "inventoryQuantityOverride",
    "missing_since": "missingSince", "available": "available",
    "last_fetched_at": "lastFetchedAt", "created_at": "createdAt", "updated_at": "updatedAt",
}
_JSON = ("options", "images")


def _value(column: str, v: Any) -> Any:
    if v is None:
        return None
    if column in _JSON:
        return orjson.Fragment(v)  # jsonb text as stored
    if isinstance(v, Decimal):
        return orjson.Fragment(format(v, "f"))  # exact, as a JSON number
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def render(row: asyncpg.Record) -> dict[str, Any]:
    extra = orjson.loads(row["extra"]) if row["extra"] else {}
    out: dict[str, Any] = {k: v for k, v in extra.items() if k not in SHOWN.values()}
    for column, name in SHOWN.items():
        out[name] = _value(column, row[column])
    return out
