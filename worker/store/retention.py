"""Retention in Postgres: old item history, past days of the daily SKU limit, old
message outcomes and old notifications go."""

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


async def forget_outcomes(conn: Conn | asyncpg.Pool, older_than_s: float, limit: int) -> int:
    """Delete up to `limit` message outcomes and up to `limit` API message records older
    than `older_than_s`; how many went (both together)."""
    row = await conn.fetchrow(q(_SQL, "forget_outcomes"), older_than_s, limit)
    return int(row["outcomes"]) + int(row["messages"]) if row is not None else 0


async def forget_notifications(conn: Conn | asyncpg.Pool, older_than_s: float,
                               limit: int) -> int:
    """Delete up to `limit` notifications decided more than `older_than_s` ago."""
    return _count(await conn.execute(q(_SQL, "forget_notifications"), older_than_s, limit))


def _count(status: str) -> int:
    """The row count of a command status such as `DELETE 42`."""
    return int(status.split()[-1])
