"""Retention in Postgres: old item history and past days of the daily SKU limit go."""

from __future__ import annotations

import asyncpg

from worker.store.db import Conn
from worker.store.queries import q

_SQL = "retention.sql"


async def forget_history(conn: Conn | asyncpg.Pool, older_than_s: float, limit: int) -> int:
    """Delete up to `limit` item history rows older than `older_than_s`; how many went."""
    return _count(await conn.execute(q(_SQL, "forget_history"), older_than_s, limit))


async def forget_daily_items(conn: Conn | asyncpg.Pool, limit: int) -> int:
    """Delete up to `limit` rows of past days of the daily SKU limit; how many went."""
    return _count(await conn.execute(q(_SQL, "forget_daily_items"), limit))


def _count(status: str) -> int:
    """The row count of a command status such as `DELETE 42`."""
    return int(status.split()[-1])
