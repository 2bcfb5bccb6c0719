"""Connections keep their prepared statements, the long merges included: a statement is
parsed and planned once per connection, not on every call."""

from __future__ import annotations

import asyncpg

from worker.settings import Settings
from worker.store import db
from worker.store.queries import load

# Longer than asyncpg's own limit for the statements it keeps (15 KiB), as the merges are.
LONG = "SELECT 1 AS one /* " + "x" * 20_000 + " */"


async def _prepared(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> int:
    n: int = await conn.fetchval(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT 1 AS one /*%'")
    return n


async def test_a_long_statement_is_prepared_once_on_a_connection(settings: Settings) -> None:
    conn = await db.connect(settings.database_url)
    try:
        for _ in range(3):
            assert await conn.fetchval(LONG) == 1
        assert await _prepared(conn) == 1
    finally:
        await conn.close()


async def test_a_long_statement_is_prepared_once_on_a_pool_connection(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for _ in range(3):
            assert await conn.fetchval(LONG) == 1
        assert await _prepared(conn) == 1


def test_every_named_query_fits_the_statement_cache() -> None:
    longest = max(len(sql) for name in ("pull.sql", "push.sql") for sql in load(name).values())
    assert 15 * 1024 < longest < db.MAX_CACHED_STATEMENT
