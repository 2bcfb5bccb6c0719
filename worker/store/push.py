"""Push micro-batches in Postgres: remembered ids, staging, the merge, push run records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson

from worker.constants import LOCK_CLASS_FEED_MERGE
from worker.model import PUSH_COLUMNS, StoredReject
from worker.store.bulk import daily_allowances
from worker.store.db import Conn, is_citus
from worker.store.queries import q
from worker.store.runs import store_rejects

_SQL = "push.sql"


@dataclass
class FeedCounts:
    received: int = 0
    distinct: int = 0
    inserted: int = 0
    updated: int = 0
    stale: int = 0
    held: int = 0        # held back by the daily SKU limit
    connected: int = 0
    ambiguous: int = 0
    rejected: int = 0
    duplicates: int = 0
    messages: int = 0
    rejects: list[StoredReject] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)  # values each value rule changed
    refused: dict[str, str] = field(default_factory=dict)  # external id -> a value rule's no

    @property
    def unchanged(self) -> int:
        return self.distinct - self.inserted - self.updated - self.held


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


async def order_times(conn: Conn, keys: Sequence[tuple[int, str]]
                      ) -> dict[tuple[int, str], datetime | None]:
    """The stored order time (ordered_at) of each (feed, external id) that exists."""
    if not keys:
        return {}
    rows = await conn.fetch(q(_SQL, "order_times"), [k[0] for k in keys], [k[1] for k in keys])
    return {(r["inventory_feed_id"], r["external_id"]): r["ordered_at"] for r in rows}


ReplayRow = tuple[str | None, str, str, int, int, int, int, str | None]


async def record_replays(conn: Conn, rows: Sequence[ReplayRow]) -> None:
    """Outcomes of replayed messages: (replay id, message id, outcome, variants, applied,
    stale, rejected, reason); a message's later outcome replaces an earlier one."""
    if rows:
        await conn.executemany(q(_SQL, "record_replay_outcome"), rows)


async def record_dead_replays(pool: asyncpg.Pool,
                              rows: Sequence[tuple[str | None, str, str]]) -> None:
    """Replayed messages dead-lettered again: (replay id, message id, reason)."""
    async with pool.acquire() as conn:
        await record_replays(conn, [(r, m, "dead-lettered", 0, 0, 0, 0, why)
                                    for r, m, why in rows])


async def stage(conn: Conn, lines: list[str], again: bool = False) -> None:
    """The group's items into this connection's staging table (`again`: in place of those
    staged before in this transaction). Takes no lock: it may run while the previous
    group's transaction is still going."""
    if again:
        await conn.execute("DELETE FROM push_staging")
    # one round trip each where it can: the loop that awaits them is busy folding
    await conn.execute(q(_SQL, "create_staging") + ";\n" + q(_SQL, "merge_settings"))
    if not lines:  # every variant was rejected: nothing to stage, the rejects still count
        return
    data = ("\n".join(lines) + "\n").encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    await conn.copy_to_table("push_staging", source=chunks(), columns=list(PUSH_COLUMNS),
                             format="text", null="")


async def merge(conn: Conn, feeds: Mapping[int, asyncpg.Record], history: bool,
                outcomes: dict[tuple[int, str], str] | None = None
                ) -> dict[int, tuple[int, dict[str, int]]]:
    """Merge the staged items (see `stage`); by feed: its push run's id and the counts.
    With `outcomes`, each item's outcome is put there too (merge_items: inserted, updated,
    unchanged, stale or held, by (feed, external id)), and the counts summed from them."""
    feed_ids = sorted(feeds)
    runs = {r["inventory_feed_id"]: r["id"]
            for r in await conn.fetch(q(_SQL, "open_push_runs", is_citus(conn)), feed_ids,
                                      LOCK_CLASS_FEED_MERGE)}
    allowances, day = await daily_allowances(
        conn, {f["provider_id"]: f["daily_sku_limit"] for f in feeds.values()
               if f["daily_sku_limit"] is not None})
    args = (feed_ids, [runs[f] for f in feed_ids], history, list(allowances),
            list(allowances.values()), day)
    if outcomes is None:
        rows = await conn.fetch(q(_SQL, "merge", is_citus(conn)), *args)
        counts = {r["feed_id"]: {k: r[k] for k in ("distinct_rows", "inserted", "updated",
                                                   "stale", "held", "connected", "ambiguous")}
                  for r in rows}
        return {f: (runs[f], counts.get(f, {})) for f in feed_ids}
    counts = {}
    for r in await conn.fetch(q(_SQL, "merge_items", is_citus(conn)), *args):
        c = counts.setdefault(r["feed_id"], dict.fromkeys(_ITEM_COUNTS, 0))
        outcome = r["outcome"]
        outcomes[(r["feed_id"], r["external_id"])] = outcome
        c["distinct_rows"] += 1
        if outcome in ("inserted", "updated", "stale", "held"):
            c[outcome] += 1
        c["connected"] += r["connected"]
        c["ambiguous"] += r["ambiguous"]
    return {f: (runs[f], counts.get(f, {})) for f in feed_ids}


_ITEM_COUNTS = ("distinct_rows", "inserted", "updated", "stale", "held", "connected",
                "ambiguous")


async def stored_items(conn: Conn, keys: Sequence[tuple[int, str]]
                       ) -> dict[tuple[int, str], asyncpg.Record]:
    """The stored items of these keys (feed, external id), as the HTTP API shows them."""
    if not keys:
        return {}
    rows = await conn.fetch(q(_SQL, "stored_items"), [k[0] for k in keys], [k[1] for k in keys])
    return {(r["inventory_feed_id"], r["external_id"]): r for r in rows}


async def record_run(conn: Conn, run_id: int, c: FeedCounts) -> None:
    await conn.execute(
        q(_SQL, "record_push_run", is_citus(conn)), run_id, c.received, c.inserted, c.updated,
        c.unchanged, c.rejected, c.duplicates, c.messages, c.stale, c.connected, c.ambiguous,
        c.held, orjson.dumps(c.rules).decode())
    await store_rejects(conn, run_id, c.rejects)
