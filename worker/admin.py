"""`migrate`, `check` and `token create`: small commands that talk to Postgres and RabbitMQ
once."""

from __future__ import annotations

import asyncio

from worker import broker, logs
from worker.errors import ConfigError, Unavailable
from worker.settings import Settings
from worker.store import db, migrate
from worker.urls import mask, scrub, several

log = logs.get(__name__)


async def run_migrations(settings: Settings) -> list[str]:
    if await db.ensure_database(settings.database_url):
        log.info("database.created", database=mask(settings.database_url))
    conn = await db.connect(settings.database_url)
    try:
        return await migrate.apply(conn, citus=settings.citus)
    finally:
        await conn.close()


async def check(settings: Settings, timeout_s: float = 5.0) -> list[str]:
    """Problems found; an empty list means Postgres and RabbitMQ both answer."""
    problems: list[str] = []
    try:
        conn = await db.connect(settings.database_url, timeout_s=timeout_s)
        try:
            await db.ping(conn)
        finally:
            await conn.close()
    except Exception as exc:
        problems.append(f"postgres: {exc}")
    try:  # one node of AMQP_URL's answering is enough: the daemon would fail over to it
        nodes = len(several(settings.amqp_url))
        connection = await asyncio.wait_for(broker.connect(settings.amqp_url, timeout_s),
                                            nodes * timeout_s + 1)
        await connection.close()
    except Unavailable as exc:  # it names every node tried, masked
        problems.append(f"rabbitmq: {scrub(str(exc), settings.amqp_url)}")
    except Exception as exc:
        problems.append(f"rabbitmq at {mask(settings.amqp_url)}: "
                        f"{type(exc).__name__}: {scrub(str(exc), settings.amqp_url)}")
    return [scrub(p, settings.database_url) for p in problems]


async def create_token(settings: Settings, provider_id: int | None) -> str:
    """A new API token (admin when provider_id is None), to be printed once."""
    from worker.api import tokens
    from worker.store import api as store

    pool = await db.create_pool(settings.database_url, size=1)
    try:
        if provider_id is not None and await store.get_provider(pool, provider_id, None) is None:
            raise ConfigError(f"dropship provider {provider_id} does not exist")
        return await tokens.create(pool, provider_id)
    finally:
        await pool.close()


async def revoke_token(settings: Settings, token_id: int) -> bool:
    """Revoke an API token; False when there was no live token of that id."""
    from worker.store import api as store

    pool = await db.create_pool(settings.database_url, size=1)
    try:
        return await store.revoke_token(pool, token_id)
    finally:
        await pool.close()
