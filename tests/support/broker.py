"""RabbitMQ helpers for tests: a clean topology, publishing, reading the dead-letter queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from tests.support.services import AMQP_URL
from worker import constants as C
from worker.daemon import Daemon
from worker.settings import Settings


async def delete_topology() -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in (C.QUEUE_PULL, C.QUEUE_UPDATE, C.QUEUE_DEAD_LETTER):
            await channel.queue_delete(name)


async def publish(body: bytes, routing_key: str = C.ROUTING_PULL,
                  message_id: str | None = None, **kwargs: Any) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        await exchange.publish(
            aio_pika.Message(body, message_id=message_id, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **kwargs),
            routing_key=routing_key, mandatory=True)


async def dead_letters() -> list[AbstractIncomingMessage]:
    """Everything in the dead-letter queue right now (taken off it)."""
    got = []
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(C.QUEUE_DEAD_LETTER, ensure=False)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(message)
    return got


async def queue_depth(name: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


@contextlib.asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[Daemon]:
    """A daemon in this event loop, stopped (gracefully) at the end of the block."""
    daemon = Daemon(settings, handle_signals=False)
    task = asyncio.create_task(daemon.run(), name=f"daemon-{settings.worker_id}")
    try:
        started = asyncio.create_task(daemon.started.wait())
        await asyncio.wait({started, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped it
        assert daemon.started.is_set(), "the daemon did not start within 30 s"
        yield daemon
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 30) == 0
