"""Push micro-batches in Postgres: remembered ids, staging, the merge, push run records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import asyncpg

from worker.pushmap import PUSH_COLUMNS
from worker.store.bulk import lock_feed
from worker.store.db import Conn
from worker.store.queries import q
from worker.store.runs import StoredReject, store_rejects

_SQL = "push.sql"


@dataclass
class FeedCounts:
    received: int = 0
    distinct: int = 0
    inserted: int = 0
    updated: int = 0
    stale: int = 0
    rejected: int = 0
    duplicates: int = 0
    messages: int = 0
    rejects: list[StoredReject] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.distinct - self.inserted - self.updated


async def remember(conn: Conn, message_ids: Sequence[str]) -> set[str]:
    """The ids not seen before, now remembered in this transaction."""
    if not message_ids:
        return set()
    rows = await conn.fetch(q(_SQL, "remember_messages"), list(message_ids))
    return {r["message_id"] for r in rows}


async def forget_old(pool: asyncpg.Pool, retention_s: float, limit: int = 10_000) -> int:
    status: str = await pool.execute(q(_SQL, "forget_messages"), retention_s, limit)
    return int(status.split()[-1])


async def load_feeds(pool: asyncpg.Pool, feed_ids: Sequence[int]) -> dict[int, asyncpg.Record]:
    rows = await pool.fetch(q(_SQL, "load_feeds"), list(feed_ids))
    return {r["id"]: r for r in rows}


async def merge(conn: Conn, lines: list[str], feed_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """COPY the group's items and merge them; counts by feed."""
    await conn.execute(q(_SQL, "create_staging"))
    for feed_id in sorted(feed_ids):  # one order for every writer: no deadlocks
        await lock_feed(conn, feed_id)
    data = ("\n".join(lines) + "\n").encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    await conn.copy_to_table("push_staging", source=chunks(), columns=list(PUSH_COLUMNS),
                             format="text", null="")
    return {r["feed_id"]: {"distinct": r["distinct_rows"], "inserted": r["inserted"],
                           "updated": r["updated"], "stale": r["stale"]}
            for r in await conn.fetch(q(_SQL, "merge"))}


async def record_run(conn: Conn, feed_id: int, c: FeedCounts) -> int:
    run_id: int = await conn.fetchval(
        q(_SQL, "record_push_run"), feed_id, c.received, c.inserted, c.updated, c.unchanged,
        c.rejected, c.duplicates, c.messages, c.stale)
    await store_rejects(conn, run_id, c.rejects)
    return run_id
