"""The fleet benchmark's floor (part D): what the database alone needs for fleet A's work.

Each feed's file is read from disk and applied the way a Postgres engineer would write it
by hand, in one transaction per feed: asyncpg's COPY of the CSV as it is into a temp table,
then one `INSERT ... SELECT ... ORDER BY external_id ON CONFLICT ... DO UPDATE ... WHERE
(...) IS DISTINCT FROM (...)` (both from sql/upsert_sorted.sql, the pull benchmark's L'),
then COMMIT. No broker, no HTTP, no parsing or checking in Python, no run recorded:
`connections` connections take the feeds one after the other, as many as the daemon runs
small pulls at once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

# L' of the pull benchmark, as its psql script has it (one text for both benchmarks): its
# staging table, kept for the connection and emptied at each commit, and its upsert.
SCRIPT = Path(__file__).with_name("sql") / "upsert_sorted.sql"


def statements() -> tuple[str, str]:
    text = SCRIPT.read_text(encoding="utf-8")
    columns = re.search(r"CREATE TEMP TABLE staging \((.*?)\);", text, re.S)
    upsert = re.search(r"(INSERT INTO .*?);", text, re.S)
    if columns is None or upsert is None:
        raise RuntimeError(f"{SCRIPT}: no staging table or upsert found")
    return (f"CREATE TEMP TABLE IF NOT EXISTS staging ({columns[1]}) ON COMMIT DELETE ROWS",
            upsert[1].replace(":feed_id", "$1"))


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
        await conn.execute(statements()[0])
    return conns


async def apply_all(conns: list[asyncpg.Connection], jobs: list[tuple[int, Path]]) -> Floor:
    """Each (feed id, file) applied by hand, one connection of `conns` each at a time."""
    todo: Iterator[tuple[int, Path]] = iter(jobs)
    upsert = statements()[1]
    written = 0

    async def work(conn: asyncpg.Connection) -> None:
        nonlocal written
        for feed_id, path in todo:
            async with conn.transaction():
                await conn.copy_to_table("staging", source=path, format="csv", header=True)
                status = await conn.execute(upsert, feed_id)
            written += int(status.split()[-1])

    start = time.perf_counter()
    await asyncio.gather(*(work(c) for c in conns))
    return Floor(len(jobs), time.perf_counter() - start, written)
