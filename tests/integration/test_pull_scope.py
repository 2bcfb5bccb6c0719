"""A large pull reads its own feed's items, not the whole items table.

The items of every feed share one table. A pull of a feed that is a small part of it must
not scan the other feeds' rows: with many feeds that would make every large pull as slow
as the whole table. The large-merge plan (no nested loops) is the one at risk, so the
file here is above bulk.LARGE_MERGE_ROWS. The reads are counted by Postgres itself, for
the merge's own transaction (pg_stat_xact_user_tables).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg

from tests.support import feeds
from worker.model import COLUMN_BIT
from worker.store import bulk, runs

OTHER_ROWS = 300_000   # the other feeds' items: the table is mostly theirs
KEPT = 24_000          # our feed's items that the file still has (the file: these + NEW)
GONE = 1_000           # ... and that it no longer has (cleanup zeroes them)
NEW = 4_000            # new items in the file; half of them match a store variant

SEED_ITEMS = """
INSERT INTO inventory_feed_variants (inventory_feed_id, external_id, vendor_sku,
                                     inventory_quantity, variant_id)
SELECT $1, $2 || n, $2 || 'SKU-' || n, 1,
       CASE WHEN $3 AND n % 4 = 0 THEN 10000000 + n END
FROM generate_series(0, $4 - 1) AS n
"""
READS = """
SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
WHERE relname = 'inventory_feed_variants'
"""


async def file_lines() -> AsyncIterator[bytes]:
    """COPY text lines: kept items (every 10th with a new quantity), then new ones."""
    kept = (f"{i}\tA{i}\tASKU-{i}\t{2 if i % 10 == 0 else 1}\n" for i in range(KEPT))
    yield "".join(kept).encode()
    new = (f"{KEPT + GONE + i}\tN{i}\tSTORE-{i}\t7\n" for i in range(NEW))
    yield "".join(new).encode()


async def test_a_large_pull_reads_only_its_own_feeds_items(pool: asyncpg.Pool) -> None:
    other = await feeds.make_feed(pool)
    await pool.execute(SEED_ITEMS, other, "O", True, OTHER_ROWS)
    feed_id = await feeds.make_feed(pool, fetch_cleanup="enabled")
    await pool.execute(SEED_ITEMS, feed_id, "A", False, KEPT + GONE)
    await pool.execute("INSERT INTO variants (sku) SELECT 'STORE-' || n "
                       "FROM generate_series(0, $1 - 1, 2) AS n", NEW)
    await pool.execute("VACUUM ANALYZE inventory_feed_variants")
    await pool.execute("ANALYZE variants")
    feed = await runs.load_feed(pool, feed_id)
    assert feed is not None
    assert feed.automatically_connect
    mask = COLUMN_BIT["vendor_sku"] | COLUMN_BIT["inventory_quantity"]
    rows = KEPT + NEW
    assert rows >= bulk.LARGE_MERGE_ROWS

    async with pool.acquire() as conn, conn.transaction():
        await bulk.create_staging(conn)
        await conn.copy_to_table("pull_staging", source=file_lines(), format="text",
                                 columns=["pos", "external_id", "vendor_sku",
                                          "inventory_quantity"])
        counts = await bulk.merge_pull(conn, feed, mask, "64MB",
                                       bulk.MergeOptions(None, cleanup=True, history=True), rows)
        reads = await conn.fetchval(READS)

    # what the merge did, so that the reads below are those of a real merge
    assert (counts.inserted, counts.updated, counts.zeroed) == (NEW, KEPT // 10, GONE)
    assert counts.connected == NEW // 2
    # Our feed has KEPT + GONE items; the merge reads them a few times over (the join with
    # the file, the missing items, the updates). Touching the other feeds' rows even once
    # would read at least OTHER_ROWS more.
    ours = KEPT + GONE
    assert reads < OTHER_ROWS, f"read {reads} rows of the items table; our feed has {ours}"
