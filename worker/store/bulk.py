"""The bulk core: COPY rows into a temp staging table, then one set-based merge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from worker.constants import LOCK_CLASS_FEED_MERGE
from worker.store.db import Conn
from worker.store.queries import q

_SQL = "pull.sql"


@dataclass(frozen=True)
class MergeCounts:
    distinct: int
    inserted: int
    updated: int

    @property
    def unchanged(self) -> int:
        return self.distinct - self.inserted - self.updated


async def create_staging(conn: Conn) -> None:
    """A temp table that lives until the run's transaction ends."""
    await conn.execute(q(_SQL, "create_staging"))


async def copy_rows(
    conn: Conn, columns: Sequence[str], chunks: AsyncIterator[bytes]
) -> None:
    """Stream rows in COPY's text format (tab-separated, blank = NULL) into staging."""
    await conn.copy_to_table("pull_staging", source=chunks, columns=list(columns),
                             format="text", null="")


async def lock_feed(conn: Conn, feed_id: int) -> None:
    """Serialise writers of one feed (pulls and push batches) until the transaction ends."""
    await conn.execute(q(_SQL, "lock_feed"), LOCK_CLASS_FEED_MERGE, feed_id % (2**31))


async def merge_pull(
    conn: Conn, feed_id: int, column_mask: int, work_mem: str
) -> MergeCounts:
    await conn.execute(q(_SQL, "analyze_staging"))
    await conn.fetchrow(q(_SQL, "merge_settings"), work_mem)
    await lock_feed(conn, feed_id)
    row = await conn.fetchrow(q(_SQL, "merge"), feed_id, column_mask)
    if row is None:  # pragma: no cover - the query always returns one row
        raise RuntimeError("merge returned no row")
    return MergeCounts(row["distinct_rows"], row["inserted"], row["updated"])
