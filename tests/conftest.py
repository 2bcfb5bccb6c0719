"""Fixtures: a fresh database per test (cloned from a migrated template), a loopback HTTP
feed server, and settings pointing at them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest

from tests.support.feedserver import FeedServer
from tests.support.services import (
    AMQP_URL,
    admin,
    drop_vhost,
    dsn_for,
    require_services,
)
from worker.settings import Settings
from worker.store import db, migrate

# One template per test session: sessions running side by side (a developer's and an
# editor's) must not drop each other's template.
TEMPLATE = f"fw_test_template_{os.getpid()}"


async def _build_template() -> None:
    await admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    await admin(f"CREATE DATABASE {TEMPLATE}")
    conn = await db.connect(dsn_for(TEMPLATE))
    try:
        await migrate.apply(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def services() -> Iterator[None]:
    require_services()  # and the session's own vhost on the broker
    try:
        yield
    finally:
        drop_vhost()


@pytest.fixture(scope="session")
def pg_template(services: None) -> Iterator[str]:
    asyncio.run(_build_template())
    try:
        yield TEMPLATE
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))


@pytest.fixture
def db_url(pg_template: str) -> Iterator[str]:
    name = f"fw_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    try:
        yield dsn_for(name)
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def settings(db_url: str) -> Settings:
    return replace(
        Settings(),
        database_url=db_url,
        amqp_url=AMQP_URL,
        http_port=0,
        lease_s=5.0,
        shutdown_grace_s=10.0,
        fetch_connect_timeout_s=2.0,
        fetch_read_timeout_s=2.0,
        worker_id=f"test-{uuid.uuid4().hex[:6]}",
        allowed_networks="127.0.0.1/32",  # the loopback test servers; nothing else
        scheduler=False,  # test feeds are hourly: only the schedule tests queue pulls by time
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(settings.database_url, size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
