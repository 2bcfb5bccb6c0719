"""Fixtures of the integration tests that need the broker or daemon processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support import broker
from tests.support.apiprocess import ApiProcess, Client, client
from tests.support.process import DaemonProcess
from worker.api import tokens


@pytest.fixture
async def clean_broker(services: None) -> None:
    """No worker queues: each test declares (through a daemon) and fills its own."""
    await broker.delete_topology()


@pytest.fixture
async def processes() -> AsyncIterator[list[DaemonProcess]]:
    """Daemon processes a test starts; killed at its end if still running."""
    started: list[DaemonProcess] = []
    yield started
    for p in started:
        await p.stop()


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[ApiProcess]:
    """`feed-worker api` on its own database, with room for the tests' bursts."""
    process = ApiProcess(db_url, FEED_WORKER_API_RATE_PER_S="1000",
                         FEED_WORKER_API_RATE_BURST="1000",
                         FEED_WORKER_API_MAX_BODY_BYTES="65536")
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest.fixture
async def admin(api: ApiProcess, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    """A client of the API with an admin token."""
    async with client(api.url, await tokens.create(pool, None)) as c:
        yield c
