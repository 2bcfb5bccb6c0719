"""Keyset pagination: `?limit=N&after=ID`, and `Link: <...>; rel="next"` while there may
be more."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from aiohttp import web

from worker.api.errors import ApiError, json

DEFAULT_LIMIT = 50
MAX_LIMIT = 250


def query_int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= maximum:
        raise ApiError(400, "bad_query", f"{name} must be a whole number from 0 to {maximum}",
                       [{"parameter": name, "reason": "out of range"}])
    return int(raw)


def page_size(request: web.Request) -> tuple[int, int]:
    """(limit, after) of the request's query."""
    limit = query_int(request, "limit", DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT
    return limit, query_int(request, "after", 0, 2**63 - 1)


def page(request: web.Request, items: list[dict[str, Any]],
         rows: Sequence[asyncpg.Record], limit: int) -> web.Response:
    headers = {}
    if len(rows) == limit:
        url = request.rel_url.update_query(after=str(rows[-1]["id"]), limit=str(limit))
        headers["Link"] = f'<{url}>; rel="next"'
    return json(items, headers=headers)
