"""Where the test suite finds Postgres and RabbitMQ, and a loud failure when it cannot."""

from __future__ import annotations

import asyncio
import os

import aio_pika
import asyncpg
import pytest

ADMIN_DSN = os.environ.get("FEED_WORKER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("FEED_WORKER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def dsn_for(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


async def _check_pg() -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    await conn.close()


async def _check_amqp() -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    await connection.close()


def require_services() -> None:
    """Fail (never skip) with the command that starts what is missing."""
    try:
        asyncio.run(_check_pg())
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_DSN} ({exc}); run "
                    "`make services` or `pg_ctlcluster 15 main start`", pytrace=False)
    try:
        asyncio.run(_check_amqp())
    except Exception as exc:
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL} ({exc}); run "
                    "`make services` or `rabbitmq-server -detached`", pytrace=False)
