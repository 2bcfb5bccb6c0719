"""Feed items: GET /api/inventory-feed-variants.json (filters, keyset pages) and
GET/PUT /api/inventory-feed-variants/:id.json. A PUT is a push of that item through the
same merge as parse-webhook: history, overrides, the ordering guard and the daily limit
apply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from worker.api import items
from worker.api.context import caller, context, json_object, path_id
from worker.api.errors import ApiError, invalid, json, not_found, pointer
from worker.api.pages import page, page_size, query_int
from worker.api.push import apply_one, writable_feed
from worker.store import api as store

# Shown but written by the worker or an operator, never by a push: dropped from a PUT's
# body (a GET's answer may be sent back as it was read).
READ_ONLY = ("id", "inventoryFeedId", "variantId", "inventoryQuantityOverride",
             "missingSince", "available", "lastFetchedAt", "createdAt", "updatedAt")


def _text_filter(request: web.Request, name: str) -> str | None:
    v = request.query.get(name)
    return v.strip() if v is not None and v.strip() else None


def _bool_filter(request: web.Request, name: str) -> bool | None:
    v = request.query.get(name)
    if v is None:
        return None
    if v not in ("true", "false"):
        raise ApiError(400, "bad_query", f"{name} must be true or false",
                       [{"parameter": name, "reason": "must be true or false"}])
    return v == "true"


def _time_filter(request: web.Request, name: str) -> datetime | None:
    v = request.query.get(name)
    if v is None:
        return None
    try:
        t = datetime.fromisoformat(v.strip())
    except ValueError:
        raise ApiError(400, "bad_query", f"{name} must be an ISO 8601 date-time",
                       [{"parameter": name, "reason": "not an ISO 8601 date-time"}]) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


async def index(request: web.Request) -> web.Response:
    limit, after = page_size(request)
    rows = await store.list_items(
        context(request).pool, caller(request).scope,
        query_int(request, "inventoryFeedId", 0, 2**63 - 1) or None,
        _text_filter(request, "externalId"), _text_filter(request, "vendorSku"),
        _text_filter(request, "barcode"), _bool_filter(request, "connected"),
        _time_filter(request, "updatedSince"), after, limit)
    return page(request, [items.render(r) for r in rows], rows, limit)


async def show(request: web.Request) -> web.Response:
    row = await store.get_item_by_id(context(request).pool, path_id(request),
                                     caller(request).scope)
    if row is None:
        raise not_found("inventory feed variant")
    return json(items.render(row))


async def update(request: web.Request) -> web.Response:
    ctx, who = context(request), caller(request)
    row = await store.get_item_by_id(ctx.pool, path_id(request), who.scope)
    if row is None:  # before the body: another's id is 404, whatever the body
        raise not_found("inventory feed variant")
    data = await json_object(request)
    if "externalId" in data and data["externalId"] != row["external_id"]:
        raise invalid(pointer("externalId"), "cannot change: it is the item's key")
    await writable_feed(ctx, who, row["inventory_feed_id"])
    variant: dict[str, Any] = {k: v for k, v in data.items() if k not in READ_ONLY}
    variant["externalId"] = row["external_id"]
    return await apply_one(ctx, who, row["inventory_feed_id"], variant)
