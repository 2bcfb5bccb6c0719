"""RabbitMQ for the push benchmark: the worker's topology, confirmed publishing, queue state,
and the raw consumer that is the limit of what a Python client can take off a quorum queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from worker import broker
from worker import constants as C

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PUBLISH_IN_FLIGHT = 1000


class SetupError(Exception):
    """The broker is not in a state the benchmark can start from."""


@dataclass(frozen=True)
class QueueState:
    ready: int  # messages waiting (not delivered or returned); unacked ones are not counted
    consumers: int


async def connect(url: str) -> AbstractConnection:
    return await aio_pika.connect(url, timeout=10)


async def queue_state(channel: AbstractChannel, name: str) -> QueueState:
    """Passive declare: the queue's ready messages and consumers (fails if it is missing)."""
    queue = await channel.declare_queue(name, passive=True)
    result = queue.declaration_result
    return QueueState(int(result.message_count or 0), int(result.consumer_count or 0))


async def fresh_topology(connection: AbstractConnection, delivery_limit: int) -> None:
    """Delete inventory.feed-update (unless someone consumes it) and declare the worker's
    topology with exactly its arguments (worker.broker.declare)."""
    channel = await connection.channel()
    try:
        existing: QueueState | None = await queue_state(channel, C.QUEUE_UPDATE)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        existing = None  # not declared yet (the failed passive declare closed the channel)
    try:
        if existing is not None:
            if existing.consumers:
                raise SetupError(
                    f"{C.QUEUE_UPDATE} has {existing.consumers} consumer(s) (a feed-worker "
                    "daemon or the tests?); stop them first"
                )
            await channel.queue_delete(C.QUEUE_UPDATE)  # quorum queues take no if_unused
    finally:
        if not channel.is_closed:
            await channel.close()
    channel = await connection.channel()
    try:
        await broker.declare(channel, delivery_limit)
    finally:
        await channel.close()


async def ensure_empty(connection: AbstractConnection, name: str) -> int:
    """Purge the queue when something is left in it; the number of messages purged.

    Raises SetupError when another consumer is attached (it would take our messages)."""
    channel = await connection.channel()
    try:
        state = await queue_state(channel, name)
        if state.consumers:
            raise SetupError(f"{name} has {state.consumers} consumer(s) that are not ours")
        if state.ready:
            queue = await channel.get_queue(name, ensure=False)
            await queue.purge()
        return state.ready
    finally:
        await channel.close()


@dataclass(frozen=True)
class Published:
    message_ids: list[str]
    seconds: float


async def publish_all(
    connection: AbstractConnection, bodies: list[bytes], in_flight: int = PUBLISH_IN_FLIGHT
) -> Published:
    """Persistent feed-update messages with fresh ids, `mandatory`, every one confirmed;
    at most `in_flight` unconfirmed at once. Raises when the broker does not take one."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        exchange = await channel.get_exchange(C.EXCHANGE, ensure=False)
        ids = [str(uuid.uuid4()) for _ in bodies]
        start = time.perf_counter()
        for i in range(0, len(bodies), in_flight):
            chunk = range(i, min(i + in_flight, len(bodies)))
            results = await asyncio.gather(
                *(
                    exchange.publish(
                        broker.json_message(bodies[j], ids[j]),
                        routing_key=C.ROUTING_UPDATE,
                        mandatory=True,
                    )
                    for j in chunk
                ),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise SetupError(f"the broker did not take {len(failed)} message(s): {failed[0]}")
        return Published(ids, time.perf_counter() - start)
    finally:
        await channel.close()


@dataclass
class Consumed:
    seconds: float | None  # None: the deadline passed first
    received: list[tuple[str | None, bytes]] = field(default_factory=list)
    redelivered: int = 0


async def raw_consume(
    connection: AbstractConnection, name: str, expected: int, prefetch: int, deadline_s: float
) -> Consumed:
    """Take `expected` messages off the queue and ack each one, doing nothing else; the time
    from basic.consume to the last ack. The bodies are kept to be checked afterwards."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(name, ensure=False)
    done = asyncio.Event()
    result = Consumed(None)
    received = result.received

    async def on_message(message: AbstractIncomingMessage) -> None:
        received.append((message.message_id, message.body))
        if message.redelivered:
            result.redelivered += 1
        await message.ack()
        if len(received) >= expected:
            done.set()

    try:
        start = time.perf_counter()
        tag = await queue.consume(on_message)
        try:
            await asyncio.wait_for(done.wait(), deadline_s)
            result.seconds = time.perf_counter() - start
        except TimeoutError:
            pass
        await queue.cancel(tag)
    finally:
        await channel.close()
    return result
