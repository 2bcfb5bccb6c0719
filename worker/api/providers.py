"""Dropship providers: POST/GET/PUT /api/dropship-providers(.json|/:id.json).

Only an admin creates providers or changes a provider's daily SKU limit and archived
flag; a provider's token reads and renames its own provider and sees no other."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from worker.api import fields
from worker.api.context import caller, context, json_object, path_id
from worker.api.errors import ApiError, json, not_found, pointer
from worker.api.pages import page, page_size
from worker.store import api as store

WRITABLE = ("name", "skuPrefix", "dailySkuLimit", "archived")
READ_ONLY = ("id", "createdAt", "updatedAt")
ADMIN_ONLY = ("dailySkuLimit", "archived")


def render(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "skuPrefix": row["sku_prefix"],
            "dailySkuLimit": row["daily_sku_limit"], "archived": row["archived"],
            "createdAt": row["created_at"].isoformat(),
            "updatedAt": row["updated_at"].isoformat()}


def _values(data: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    fields.only(data, WRITABLE, READ_ONLY)
    merged = {**current, **{k: v for k, v in data.items() if k in WRITABLE}}
    return {
        "name": fields.required_text("name", merged.get("name")),
        "sku_prefix": fields.text("skuPrefix", merged.get("skuPrefix"), nullable=True),
        "daily_sku_limit": fields.integer("dailySkuLimit", merged.get("dailySkuLimit"),
                                          nullable=True),
        "archived": fields.boolean("archived", merged.get("archived", False)),
    }


async def create(request: web.Request) -> web.Response:
    if not caller(request).admin:
        raise ApiError(403, "forbidden", "only an admin token creates dropship providers")
    v = _values(await json_object(request), {})
    row = await store.insert_provider(context(request).pool, v["name"], v["sku_prefix"],
                                      v["daily_sku_limit"], v["archived"])
    return json(render(row), status=201,
                headers={"Location": f"/api/dropship-providers/{row['id']}.json"})


async def show(request: web.Request) -> web.Response:
    row = await store.get_provider(context(request).pool, path_id(request),
                                   caller(request).scope)
    if row is None:
        raise not_found("dropship provider")
    return json(render(row))


async def index(request: web.Request) -> web.Response:
    limit, after = page_size(request)
    rows = await store.list_providers(context(request).pool, caller(request).scope, after,
                                      limit)
    return page(request, [render(r) for r in rows], rows, limit)


async def update(request: web.Request) -> web.Response:
    ctx, who, provider_id = context(request), caller(request), path_id(request)
    row = await store.get_provider(ctx.pool, provider_id, who.scope)
    if row is None:  # before the body: another's id is 404, whatever the body
        raise not_found("dropship provider")
    data = await json_object(request)
    current = render(row)
    if not who.admin:
        for key in ADMIN_ONLY:
            if key in data and data[key] != current[key]:
                raise ApiError(403, "forbidden", f"only an admin token changes {key}",
                               [{"pointer": pointer(key), "reason": "admin only"}])
    v = _values(data, current)
    updated = await store.update_provider(ctx.pool, provider_id, who.scope, v["name"],
                                          v["sku_prefix"], v["daily_sku_limit"], v["archived"])
    ctx.forget_feeds()  # archived or not: its tokens and feeds
    if updated is None:  # pragma: no cover - gone between the read and the write
        raise not_found("dropship provider")
    return json(render(updated))
