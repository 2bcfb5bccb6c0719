"""Figures for the metrics that only the database knows."""

from __future__ import annotations

import asyncpg

from worker.store.db import Conn
from worker.store.queries import q

_SQL = "gauges.sql"


async def count_stale_feeds(conn: Conn | asyncpg.Pool) -> int:
    """Scheduled feeds without a successful pull for twice their interval."""
    return int(await conn.fetchval(q(_SQL, "count_stale_feeds")) or 0)
