"""The fleet benchmark's floor (part D): what the database alone needs for fleet A's work.

Each feed's file is read from disk and applied the way a Postgres engineer would write it
by hand, in one transaction per feed: asyncpg's COPY of the CSV as it is into a temp table
(sql/upsert_sorted.sql's staging), then one `INSERT ... SELECT ... ORDER BY external_id ON
CONFLICT ... DO UPDATE ... WHERE (...) IS DISTINCT FROM (...)`, then COMMIT. No broker, no
HTTP, no parsing or checking in Python, no run recorded: `connections` connections take the
feeds one after the other, as many as the daemon runs small pulls at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

STAGING = """
CREATE TEMP TABLE IF NOT EXISTS floor_staging (
    external_id        text COLLATE "C",
    vendor_sku         text,
    barcode            text,
    name               text,
    retail_price       numeric,
    compare_at_price   numeric,
    inventory_quantity integer,
    grams              numeric
) ON COMMIT DELETE ROWS
"""

UPSERT = """
INSERT INTO inventory_feed_variants AS v (
    inventory_feed_id, external_id, vendor_sku, barcode, name,
    retail_price, compare_at_price, inventory_quantity, grams
)
SELECT $1, external_id, vendor_sku, barcode, name,
       retail_price, compare_at_price, inventory_quantity, coalesce(grams, 0)
FROM floor_staging
ORDER BY external_id
ON CONFLICT (inventory_feed_id, external_id) DO UPDATE SET
    vendor_sku         = excluded.vendor_sku,
    barcode            = excluded.barcode,
    name               = excluded.name,
    retail_price       = excluded.retail_price,
    compare_at_price   = excluded.compare_at_price,
    inventory_quantity = excluded.inventory_quantity,
    grams              = excluded.grams,
    updated_at         = now()
WHERE (v.vendor_sku, v.barcode, v.name, v.retail_price, v.compare_at_price,
       v.inventory_quantity, v.grams)
      IS DISTINCT FROM
      (excluded.vendor_sku, excluded.barcode, excluded.name, excluded.retail_price,
       excluded.compare_at_price, excluded.inventory_quantity, excluded.grams)
"""


@dataclass(frozen=True)
class Floor:
    feeds: int
    seconds: float
    written: int  # rows the upserts inserted or changed

    @property
    def feeds_s(self) -> float:
        return self.feeds / self.seconds


async def connect(url: str, connections: int) -> list[asyncpg.Connection]:
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    for conn in conns:
        await conn.execute(STAGING)
    return conns


async def apply_all(conns: list[asyncpg.Connection], jobs: list[tuple[int, Path]]) -> Floor:
    """Each (feed id, file) applied by hand, one connection of `conns` each at a time."""
    todo: Iterator[tuple[int, Path]] = iter(jobs)
    written = 0

    async def work(conn: asyncpg.Connection) -> None:
        nonlocal written
        for feed_id, path in todo:
            async with conn.transaction():
                await conn.copy_to_table("floor_staging", source=path, format="csv",
                                         header=True)
                status = await conn.execute(UPSERT, feed_id)
            written += int(status.split()[-1])

    start = time.perf_counter()
    await asyncio.gather(*(work(c) for c in conns))
    return Floor(len(jobs), time.perf_counter() - start, written)
