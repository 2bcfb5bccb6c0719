"""GET /api/inventory-feeds/:id/preview.json?rows=N: the head of a pulled feed's file,
mapped as a pull would and written nowhere (pipeline/preview.py, as `feed-worker
preview`): format, header, the sampled records, per attribute how many had a value, and
the problems that would fail a pull (`ok` false)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from worker.api.context import caller, context, path_id
from worker.api.errors import ApiError, json, not_found
from worker.api.pages import query_int
from worker.claims import PULL_TYPES
from worker.errors import FeedError
from worker.pipeline import pull
from worker.pipeline.preview import DEFAULT_ROWS, MAX_ROWS, preview
from worker.store import api as store
from worker.store import runs

_SNAKE = re.compile(r"_([a-z])")


def camel(value: Any) -> Any:
    """Keys in camelCase, as the rest of the API spells them (attribute names, already
    camelCase, and value rules' names stay as they are)."""
    if isinstance(value, dict):
        return {_SNAKE.sub(lambda m: m[1].upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


async def show(request: web.Request) -> web.Response:
    ctx, who, feed_id = context(request), caller(request), path_id(request)
    if await store.get_feed(ctx.pool, feed_id, who.scope) is None:
        raise not_found("inventory feed")
    rows = query_int(request, "rows", DEFAULT_ROWS, MAX_ROWS) or DEFAULT_ROWS
    feed = await runs.load_feed(ctx.pool, feed_id)
    if feed is None:  # pragma: no cover - deleted since it was read
        raise not_found("inventory feed")
    if feed.resource_type not in PULL_TYPES or not feed.resource_location:
        raise ApiError(409, "not_pullable", f"inventory feed {feed_id} is pushed to, not "
                       "pulled: it has no file to preview")
    try:
        result = await preview(feed, pull.feed_url(feed), ctx.settings, rows)
    except FeedError as exc:  # the file could not be read at all (its message is masked)
        raise ApiError(502, "feed_unreadable", f"the feed's file could not be read: {exc}"
                       ) from None
    return json(camel(result.as_dict()))
