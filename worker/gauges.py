"""The daemon's gauges that are read, not counted: queue depths and consumers from the
broker, stale feeds from Postgres (by the replica that leads the scheduler only)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from aio_pika.abc import AbstractConnection

from worker import constants as C
from worker import logs, metrics
from worker.store import gauges

log = logs.get(__name__)

READ_TIMEOUT_S = 30.0
QUEUES = (C.QUEUE_PULL, C.QUEUE_UPDATE, C.QUEUE_DEAD_LETTER)


async def read_queues(connection: AbstractConnection) -> None:
    """Each queue's ready messages and consumers, as a passive declare tells them."""
    async with connection.channel() as channel:
        for name in QUEUES:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            metrics.QUEUE_MESSAGES.labels(name).set(result.message_count or 0)
            metrics.QUEUE_CONSUMERS.labels(name).set(result.consumer_count or 0)


async def read_stale(pool: asyncpg.Pool, leading: bool) -> None:
    metrics.FEEDS_STALE.set(await gauges.count_stale_feeds(pool) if leading else 0)


async def refresh(connection: AbstractConnection, pool: asyncpg.Pool,
                  leading: Callable[[], bool], every_s: float) -> None:
    """Side task: read every gauge each `every_s`; one that cannot be read keeps its value
    until the next round (a broker or database away is told by other signals)."""
    while True:
        await _read("queues", read_queues(connection))
        await _read("stale_feeds", read_stale(pool, leading()))
        _go_on()
        await asyncio.sleep(every_s)


def _go_on() -> None:
    """Raises CancelledError when the daemon stops: the broker client may take the
    cancellation of a reading in as its own (a channel closed mid-way, or nothing at
    all), and the loop must not go round again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _read(name: str, reading: Coroutine[Any, Any, None]) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            await reading
    except Exception as exc:
        _go_on()
        log.warning("gauges.unread", gauge=name, error=f"{type(exc).__name__}: {exc}")
