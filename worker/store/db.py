"""Connections to Postgres, with errors turned into the worker's own."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from yarl import URL

from worker.errors import ConfigError, TransientError, Unavailable
from worker.store.queries import q
from worker.urls import mask

# A connection of its own or one lent by a pool: the store's functions take either.
Conn = asyncpg.Connection | PoolConnectionProxy

_SQL = "db.sql"

# asyncpg prepares a statement once per connection and keeps it, but only up to 15 KiB of
# text by default; the merges are longer, and were parsed and planned again on every call
# (about 3 ms of server time each: the whole cost of a small group's merge).
MAX_CACHED_STATEMENT = 256 * 1024

CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                  asyncpg.CannotConnectNowError)


class Connection(asyncpg.Connection):
    """asyncpg's connection, knowing whether its database is distributed by Citus."""

    citus = False


def is_citus(conn: Conn) -> bool:
    """The connection's database has the citus extension: the store runs the `__citus`
    variants of its queries there (docs/citus.md)."""
    return bool(getattr(conn, "citus", False))


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb travels as text both ways; the worker encodes with orjson itself.
    await conn.set_type_codec("jsonb", encoder=str, decoder=str, schema="pg_catalog")
    citus = bool(await conn.fetchval(q(_SQL, "citus")))
    if isinstance(conn, Connection):
        conn.citus = citus
    if citus:
        # Citus plans a statement for its parameters' values: a generic plan of a merge
        # fails there (docs/citus.md)
        await conn.execute(q(_SQL, "custom_plans"))


async def connect(dsn: str, *, timeout_s: float = 10.0) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            dsn, timeout=timeout_s, max_cacheable_statement_size=MAX_CACHED_STATEMENT,
            connection_class=Connection)
    except asyncpg.InvalidCatalogNameError:
        raise ConfigError(f"the database of {mask(dsn)} does not exist "
                          "(feed-worker migrate creates it)") from None
    except CONNECT_ERRORS as exc:
        raise Unavailable(f"cannot connect to Postgres at {mask(dsn)}: {exc}") from None
    await _init_connection(conn)
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection back in the pool as it is (asyncpg still ends an open transaction)."""


async def create_pool(dsn: str, *, size: int, keep_sessions: bool = False) -> asyncpg.Pool:
    """`keep_sessions`: no reset query when a connection goes back to the pool (one round
    trip less per use), for code that sets nothing beyond its transactions (transaction
    locks and set_config(..., true) only, no LISTEN, no cursors left open), as the HTTP
    API's and the daemon's; the session's temp tables stay, as they do anyway."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size, init=_init_connection, timeout=10.0,
            reset=_keep_session if keep_sessions else None,
            max_cacheable_statement_size=MAX_CACHED_STATEMENT, connection_class=Connection,
        )
    except asyncpg.InvalidCatalogNameError:
        raise ConfigError(f"the database of {mask(dsn)} does not exist "
                          "(feed-worker migrate creates it)") from None
    except CONNECT_ERRORS as exc:
        raise Unavailable(f"cannot connect to Postgres at {mask(dsn)}: {exc}") from None
    if pool is None:  # pragma: no cover - create_pool returns None only when not awaited
        raise TransientError("no pool")
    return pool


async def ping(conn: Conn | asyncpg.Pool) -> None:
    """Returns once the server answers a query."""
    await conn.fetchval(q(_SQL, "ping"))


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database when it is missing; True when it was created."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10.0)
    except asyncpg.InvalidCatalogNameError:
        pass
    except CONNECT_ERRORS as exc:
        raise Unavailable(f"cannot connect to Postgres at {mask(dsn)}: {exc}") from None
    else:
        await conn.close()
        return False
    url = URL(dsn)
    name = url.path.lstrip("/")
    if not name:
        raise ConfigError(f"{mask(dsn)} names no database")
    admin = str(url.with_path("/postgres"))
    conn = await connect(admin)
    try:
        quoted: Any = await conn.fetchval(q(_SQL, "quote_ident"), name)
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # Another replica created it a moment ago.
            return False
    finally:
        await conn.close()
    return True
