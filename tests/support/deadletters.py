"""Filling and reading the dead-letter queue for replay tests: copies like the worker's
(headers as `broker._copy_to_dead_letters` sets them) and real broker dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from tests.support.services import AMQP_URL
from tests.support.wait import until
from worker import broker
from worker import constants as C


async def declare_topology() -> None:
    """The worker's exchanges and queues, as `feed-worker run` declares them."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        await broker.declare(await connection.channel(), delivery_limit=5)


def worker_headers(reason: str, *, dead_lettered_at: datetime | None = None,
                   first_received: datetime | None = None,
                   routing_key: str = C.ROUTING_UPDATE, **extra: Any) -> dict[str, Any]:
    """What the worker puts on a message it dead-letters."""
    headers: dict[str, Any] = {
        C.HEADER_ERROR: reason,
        C.HEADER_ERROR_CLASS: "BadMessage",
        C.HEADER_DEAD_LETTERED_AT: (dead_lettered_at or datetime.now(UTC)).isoformat(),
        C.HEADER_ORIGINAL_ROUTING_KEY: routing_key,
        C.HEADER_ORIGINAL_QUEUE: (C.QUEUE_PULL if routing_key == C.ROUTING_PULL
                                  else C.QUEUE_UPDATE),
    }
    headers[C.HEADER_FIRST_RECEIVED] = (first_received or datetime.now(UTC)).isoformat()
    headers.update(extra)
    return headers


async def put(body: bytes, message_id: str | None, headers: dict[str, Any],
              routing_key: str = C.ROUTING_UPDATE, **props: Any) -> None:
    """One message into inventory.dead-letter through its exchange, confirmed."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(C.DEAD_LETTER_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(body, message_id=message_id, headers=headers,
                             content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props),
            routing_key=routing_key, mandatory=True)


async def put_by_broker(body: bytes, message_id: str, routing_key: str = C.ROUTING_UPDATE,
                        **props: Any) -> None:
    """A message the broker itself dead-letters (its TTL expires in a queue that
    dead-letters into inventory.dead-letter): x-death, no worker headers."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        source = await channel.declare_exchange("fw-test-expiring", auto_delete=True,
                                                type=aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(
            "fw-test-expiring", auto_delete=True,
            arguments={"x-message-ttl": 0, "x-dead-letter-exchange": C.DEAD_LETTER_EXCHANGE})
        await queue.bind(source, "#")
        before = await depth()
        await source.publish(
            aio_pika.Message(body, message_id=message_id, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props),
            routing_key=routing_key, mandatory=True)
        await until(lambda: depth_is(before + 1), what="the broker to dead-letter it")


async def depth(name: str = C.QUEUE_DEAD_LETTER) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        queue = await (await connection.channel()).declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


async def depth_is(n: int, name: str = C.QUEUE_DEAD_LETTER) -> bool:
    return await depth(name) == n


async def take(name: str, n: int) -> list[AbstractIncomingMessage]:
    """The first n messages of a queue, taken off it (waits for them, with a deadline)."""
    got: list[AbstractIncomingMessage] = []
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        queue = await (await connection.channel()).declare_queue(name, passive=True)

        async def more() -> bool:
            while len(got) < n and (m := await queue.get(no_ack=True, fail=False)):
                got.append(m)
            return len(got) == n

        await until(more, what=f"{n} message(s) in {name}")
    return got


async def ids_in(name: str = C.QUEUE_DEAD_LETTER) -> list[str | None]:
    """The message ids of a queue in order, taking every message off it."""
    return [m.message_id for m in await take(name, await depth(name))]
