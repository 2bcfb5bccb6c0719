"""A feed's runs and their rejects, and asking for a pull:
GET /api/inventory-feeds/:id/runs.json, GET /api/feed-runs/:id/rejects.json,
POST /api/inventory-feeds/:id/fetch.json."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from worker import broker
from worker import constants as C
from worker.api.context import caller, context, json_body, path_id
from worker.api.errors import ApiError, invalid, json, not_found, pointer
from worker.api.pages import page, page_size, query_int
from worker.errors import TransientError
from worker.messages import encode_pull
from worker.store import api as store

COUNTS = {"rows_read": "rowsRead", "inserted": "inserted", "updated": "updated",
           "unchanged": "unchanged", "rejected": "rejected", "duplicates": "duplicates",
           "zeroed": "zeroed", "connected": "connected", "ambiguous": "ambiguous",
           "skipped": "skipped", "bytes": "bytes", "attempts": "attempts"}


def render_run(row: asyncpg.Record) -> dict[str, Any]:
    """A run as feed_runs holds it (its source URL is stored masked)."""
    out: dict[str, Any] = {
        "id": row["id"], "inventoryFeedId": row["inventory_feed_id"], "kind": row["kind"],
        "status": row["status"], "messageId": row["message_id"], "source": row["source"],
        "startedAt": row["started_at"].isoformat(),
        "finishedAt": row["finished_at"].isoformat() if row["finished_at"] else None,
        "timings": orjson.Fragment(row["timings"]), "details": orjson.Fragment(row["details"]),
        "error": row["error"]}
    out.update({name: row[col] for col, name in COUNTS.items()})
    return out


async def runs(request: web.Request) -> web.Response:
    ctx, who, feed_id = context(request), caller(request), path_id(request)
    if await store.get_feed(ctx.pool, feed_id, who.scope) is None:
        raise not_found("inventory feed")
    limit, _ = page_size(request)
    before = query_int(request, "before", 2**63 - 1, 2**63 - 1)
    rows = await store.list_runs(ctx.pool, feed_id, before, limit)
    headers = {}
    if len(rows) == limit:
        url = request.rel_url.update_query(before=str(rows[-1]["id"]), limit=str(limit))
        headers["Link"] = f'<{url}>; rel="next"'
    return json([render_run(r) for r in rows], headers=headers)


async def rejects(request: web.Request) -> web.Response:
    ctx, who, run_id = context(request), caller(request), path_id(request)
    if not await store.run_in_scope(ctx.pool, run_id, who.scope):
        raise not_found("feed run")
    limit, after = page_size(request)
    rows = await store.list_rejects(ctx.pool, run_id, after, limit)
    return page(request, [{"id": r["id"], "position": r["position"],
                           "messageId": r["message_id"], "raw": r["raw"],
                           "reason": r["reason"]} for r in rows], rows, limit)


async def fetch(request: web.Request) -> web.Response:
    """A pull-request for the feed, confirmed; the run appears under runs.json with this
    message id."""
    ctx, who, feed_id = context(request), caller(request), path_id(request)
    feed = await store.get_feed(ctx.pool, feed_id, who.scope)
    if feed is None:
        raise not_found("inventory feed")
    data = await json_body(request) if request.body_exists else {}
    if not isinstance(data, dict) or set(data) - {"force"}:
        raise invalid("", "the body may only be {\"force\": true|false}")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise invalid(pointer("force"), "must be true or false")
    if not feed["enabled"] or feed["provider_archived"]:
        raise ApiError(409, "feed_disabled", f"inventory feed {feed_id} is disabled")
    if feed["resource_type"] == "webhook" or not feed["resource_location"]:
        raise ApiError(409, "not_pullable", f"inventory feed {feed_id} is pushed to, not "
                       "pulled: it needs a resourceType other than webhook and a "
                       "resourceLocation")
    message = broker.json_message(encode_pull(feed_id, force), f"api-pull-{uuid.uuid4()}")
    try:
        await broker.publish_routed(ctx.exchange, message, C.ROUTING_PULL)
    except TransientError:
        raise ApiError(503, "broker_unavailable", "the pull-request could not be queued; "
                       "try again", headers={"Retry-After": "1"}) from None
    url = f"/api/inventory-feeds/{feed_id}/runs.json"
    return json({"messageId": message.message_id, "status": "queued", "runsUrl": url},
                status=202)
