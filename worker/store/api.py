"""The HTTP API's rows in Postgres: tokens, providers, feeds, items, published messages.

`scope` is the caller's provider id (a provider token) or None (an admin token): another
provider's row is not found, the same answer as a row that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from worker.store.db import Conn
from worker.store.queries import q

_SQL = "api.sql"
Db = Conn | asyncpg.Pool

# A feed's writable settings, in the order of insert_feed's and update_feed's parameters.
FEED_COLUMNS: tuple[str, ...] = (
    "dropship_provider_id", "name", "enabled", "resource_type", "resource_location",
    "authentication_token", "delimiter", "csv_has_header", "decimal_notation", "encoding",
    "mapping", "automatically_connect", "automatically_connect_by_barcode",
    "automatically_connect_prefix", "case_insensitive_skus", "fetch_cleanup",
    "fetch_frequency", "fetch_interval", "automated_fetching", "cache_imports",
    "breaker_max_zeroed_share", "breaker_max_quantity_drop", "breaker_max_rows_drop",
    "breaker_max_bytes_drop", "download_deadline_s", "run_deadline_s",
    "notify_url", "notify_secret", "notify_rejected_share", "auto_disable_after",
)


async def create_token(db: Db, secret_sha256: bytes, provider_id: int | None) -> int:
    token_id: int = await db.fetchval(q(_SQL, "create_token"), secret_sha256, provider_id,
                                      provider_id is None)
    return token_id


async def revoke_token(db: Db, token_id: int) -> bool:
    return await db.fetchval(q(_SQL, "revoke_token"), token_id) is not None


async def token(db: Db, token_id: int) -> asyncpg.Record | None:
    """A live token (not revoked, its provider not archived)."""
    return await db.fetchrow(q(_SQL, "token"), token_id)


async def insert_provider(db: Db, name: str, sku_prefix: str | None,
                          daily_sku_limit: int | None, archived: bool) -> asyncpg.Record:
    row = await db.fetchrow(q(_SQL, "insert_provider"), name, sku_prefix, daily_sku_limit,
                            archived)
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns its row
        raise RuntimeError("insert_provider returned no row")
    return row


async def get_provider(db: Db, provider_id: int, scope: int | None) -> asyncpg.Record | None:
    return await db.fetchrow(q(_SQL, "get_provider"), provider_id, scope)


async def list_providers(db: Db, scope: int | None, after: int,
                         limit: int) -> list[asyncpg.Record]:
    return list(await db.fetch(q(_SQL, "list_providers"), scope, after, limit))


async def update_provider(db: Db, provider_id: int, scope: int | None, name: str,
                          sku_prefix: str | None, daily_sku_limit: int | None,
                          archived: bool) -> asyncpg.Record | None:
    return await db.fetchrow(q(_SQL, "update_provider"), provider_id, scope, name, sku_prefix,
                             daily_sku_limit, archived)


def _feed_args(columns: Mapping[str, Any]) -> list[Any]:
    return [columns[c] for c in FEED_COLUMNS]


async def insert_feed(db: Db, columns: Mapping[str, Any]) -> int:
    """A new feed from its settings (every one of FEED_COLUMNS; `mapping` as JSON text,
    `fetch_interval` in seconds); its id."""
    feed_id: int = await db.fetchval(q(_SQL, "insert_feed"), *_feed_args(columns))
    return feed_id


async def update_feed(db: Db, feed_id: int, scope: int | None,
                      columns: Mapping[str, Any]) -> bool:
    """Every setting of the feed replaced (as insert_feed takes them); False when the feed
    is not found in the scope."""
    found = await db.fetchval(q(_SQL, "update_feed"), *_feed_args(columns), feed_id, scope)
    return found is not None


async def get_feed(db: Db, feed_id: int, scope: int | None) -> asyncpg.Record | None:
    return await db.fetchrow(q(_SQL, "get_feed"), feed_id, scope)


async def list_feeds(db: Db, scope: int | None, provider_id: int | None, after: int,
                     limit: int) -> list[asyncpg.Record]:
    return list(await db.fetch(q(_SQL, "list_feeds"), scope, provider_id, after, limit))


async def get_item(db: Db, feed_id: int, external_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(q(_SQL, "get_item"), feed_id, external_id)


async def message_published_at(db: Db, message_id: str) -> datetime | None:
    """When the message of this id was published and confirmed (None: it was not)."""
    at: datetime | None = await db.fetchval(q(_SQL, "message_published_at"), message_id)
    return at


PublishedMessage = tuple[str, int, int | None, int]  # id, feed, token, variants


async def record_published(db: Db, messages: list[PublishedMessage]) -> None:
    """Messages published and confirmed, in one statement (the same id twice: one row)."""
    unique = list({m[0]: m for m in messages}.values())
    await db.execute(q(_SQL, "record_published"), *(list(c) for c in zip(*unique, strict=True)))


async def message_status(db: Db, message_id: str,
                         scope: int | None) -> asyncpg.Record | None:
    return await db.fetchrow(q(_SQL, "message_status"), message_id, scope)


async def message_rejects(db: Db, message_id: str, limit: int) -> list[asyncpg.Record]:
    return list(await db.fetch(q(_SQL, "message_rejects"), message_id, limit))


async def list_items(db: Db, scope: int | None, feed_id: int | None, external_id: str | None,
                     vendor_sku: str | None, barcode: str | None, connected: bool | None,
                     updated_since: datetime | None, after: int,
                     limit: int) -> list[asyncpg.Record]:
    return list(await db.fetch(q(_SQL, "list_items"), scope, feed_id, external_id, vendor_sku,
                               barcode, connected, updated_since, after, limit))


async def get_item_by_id(db: Db, item_id: int, scope: int | None) -> asyncpg.Record | None:
    return await db.fetchrow(q(_SQL, "get_item_by_id"), item_id, scope)


async def list_runs(db: Db, feed_id: int, before: int, limit: int) -> list[asyncpg.Record]:
    return list(await db.fetch(q(_SQL, "list_runs"), feed_id, before, limit))


async def run_in_scope(db: Db, run_id: int, scope: int | None) -> bool:
    return await db.fetchval(q(_SQL, "run_in_scope"), run_id, scope) is not None


async def list_rejects(db: Db, run_id: int, after: int, limit: int) -> list[asyncpg.Record]:
    return list(await db.fetch(q(_SQL, "list_rejects"), run_id, after, limit))
