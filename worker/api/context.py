"""What every handler reaches through the application: settings, the pool, the publisher,
the rate limiter; and the request helpers (the caller, the JSON body)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aio_pika.abc import AbstractExchange
from aiohttp import web

from worker import coalesce
from worker.api.cache import TtlCache
from worker.api.errors import ApiError
from worker.api.limits import TokenBuckets
from worker.api.tokens import Caller, TokenCache
from worker.pipeline.syncpush import GroupCommitter
from worker.settings import Settings
from worker.store import api as store


@dataclass
class Context:
    settings: Settings
    pool: asyncpg.Pool
    exchange: AbstractExchange  # on a channel with publisher confirms
    limiter: TokenBuckets
    committer: GroupCommitter | None = None  # the synchronous pushes' group commit
    tokens: TokenCache = field(default_factory=lambda: TtlCache(0.0))
    feeds: TtlCache[int, asyncpg.Record] = field(default_factory=lambda: TtlCache(0.0))
    # messages published and confirmed, recorded together (api_messages)
    published: coalesce.Coalescer[store.PublishedMessage] = field(init=False)

    def __post_init__(self) -> None:
        self.published = coalesce.Coalescer(self._record_published)

    async def _record_published(self, messages: list[store.PublishedMessage]) -> None:
        await store.record_published(self.pool, messages)

    def forget_feeds(self, feed_id: int | None = None) -> None:
        """This replica changed a feed (or, None, a provider: its feeds and tokens)."""
        if feed_id is None:
            self.feeds.clear()
            self.tokens.clear()
        else:
            self.feeds.forget(feed_id)


CONTEXT = web.AppKey("context", Context)
CALLER = "feed_worker.caller"


def context(request: web.Request) -> Context:
    return request.app[CONTEXT]


def caller(request: web.Request) -> Caller:
    found: Caller = request[CALLER]
    return found


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric path id; ids past a bigint are found nowhere (404, not 500)."""
    value = int(request.match_info[name])
    if value > 2**63 - 1:
        raise ApiError(404, "not_found", "not found")
    return value


async def json_body(request: web.Request) -> Any:
    """The request's JSON (the middleware checked its type and size)."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "malformed_json", "the body is empty: send a JSON document")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from None


async def json_object(request: web.Request) -> dict[str, Any]:
    data = await json_body(request)
    if not isinstance(data, dict):
        raise ApiError(422, "invalid", f"the body must be a JSON object, not "
                       f"{_kind(data)}", [{"pointer": "", "reason": "must be an object"}])
    return data


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")
