"""`feed-worker replay`: look at the dead-lettered messages, and send them back.

Each dead-lettered message keeps its body, message_id and headers, plus the reason
(x-feed-worker-error) and where it came from (x-original-routing-key). Requeuing publishes
it again to the inventory exchange with its original routing key (confirmed, mandatory),
then removes it from the dead-letter queue; a message already applied is a harmless repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika

from worker import broker
from worker import constants as C
from worker.settings import Settings


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    routing_key: str
    reason: str
    body: bytes


async def list_dead(settings: Settings, limit: int) -> list[DeadLetter]:
    """Up to `limit` dead-lettered messages, left in the queue."""
    found: list[DeadLetter] = []
    connection = await broker.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(C.QUEUE_DEAD_LETTER, ensure=True)
        held = []
        while len(found) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(message)
            found.append(_describe(message))
        for message in held:  # back where they were, untouched
            await message.nack(requeue=True)
    finally:
        await connection.close()
    return found


async def requeue(settings: Settings, message_ids: set[str] | None, limit: int) -> int:
    """Send dead-lettered messages back (all, or those with the given ids); how many."""
    sent = 0
    connection = await broker.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.get_queue(C.QUEUE_DEAD_LETTER, ensure=True)
        skipped = []
        for _ in range(limit):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            dead = _describe(message)
            if message_ids is not None and dead.message_id not in message_ids:
                skipped.append(message)
                continue
            headers = {k: v for k, v in (message.headers or {}).items()
                       if not k.startswith("x-") or k == "x-original-routing-key"}
            await exchange.publish(
                aio_pika.Message(message.body, headers=headers,
                                 content_type=message.content_type,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 message_id=message.message_id, timestamp=message.timestamp),
                routing_key=dead.routing_key, mandatory=True)
            await message.ack()
            sent += 1
        for message in skipped:
            await message.nack(requeue=True)
    finally:
        await connection.close()
    return sent


def _describe(message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    routing_key = _text(headers.get(C.HEADER_ORIGINAL_ROUTING_KEY)) or message.routing_key or ""
    reason = _text(headers.get(C.HEADER_ERROR))
    if not reason:  # dead-lettered by the broker itself (the delivery limit)
        deaths = headers.get("x-death")
        first = deaths[0] if isinstance(deaths, list) and deaths else None
        why = _text(first.get("reason")) if isinstance(first, dict) else ""
        reason = f"broker: {why or 'unknown'}"
    return DeadLetter(message.message_id, routing_key, reason, message.body)


def _text(v: object) -> str:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return "" if v is None else str(v)
