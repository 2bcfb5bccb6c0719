"""RabbitMQ with aio-pika: topology, consuming with one ack decision, confirmed publishing.

Handlers return a Decision or raise; only `_deliver` acks, requeues or dead-letters.
Dead-lettering publishes a copy with the reason in a header (confirmed), then acks.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from worker import constants as C
from worker import failover, logs, metrics
from worker.errors import BadMessage, TransientError, Unavailable
from worker.urls import mask, scrub

log = logs.get(__name__)


class Decision(enum.Enum):
    ACK = "ack"
    REQUEUE = "requeue"


Handler = Callable[[AbstractIncomingMessage], Awaitable[Decision]]


def queue_arguments(delivery_limit: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": C.DEAD_LETTER_EXCHANGE,
    }


async def connect(url: str, timeout_s: float = 10.0) -> AbstractRobustConnection:
    """A connection to the first node of `url` (AMQP_URL: one URL, or a cluster's nodes
    separated by commas) that answers; it reconnects by itself, to another node when its
    own goes away, and restores its channels, queues and consumers there."""
    try:
        return await failover.connect(url, timeout_s)
    except (TimeoutError, OSError, RuntimeError, aio_pika.exceptions.AMQPError) as exc:
        raise Unavailable(
            f"cannot connect to RabbitMQ at {mask(url)}: {scrub(str(exc), url)}"
        ) from None


# What a publish raises when its connection's node went away before the confirm: worth
# sending again once the connection is on another node (a nack or a return is not).
NODE_LOST = (ConnectionError, TimeoutError, aiormq.exceptions.ChannelInvalidStateError,
             aiormq.exceptions.ConnectionClosed, aiormq.exceptions.AMQPConnectionError)


async def wait_connected(connection: AbstractRobustConnection, timeout_s: float) -> None:
    """Until the connection is up again (on another node, say); TransientError after
    timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not _up(connection):
        if time.monotonic() > deadline:
            raise TransientError(f"no RabbitMQ node answered within {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


def _up(connection: AbstractRobustConnection) -> bool:
    # `connected` is cleared by a callback a moment after the transport closed.
    transport = connection.transport
    return (connection.connected.is_set() and transport is not None
            and not transport.connection.is_closed)


def again(message: aio_pika.Message) -> aio_pika.Message:
    """The same message (body, properties, message id) to publish once more: aio-pika
    locks a message once it was published."""
    return aio_pika.Message(
        message.body, headers=dict(message.headers or {}),
        content_type=message.content_type, content_encoding=message.content_encoding,
        delivery_mode=message.delivery_mode, priority=message.priority,
        correlation_id=message.correlation_id, message_id=message.message_id,
        timestamp=message.timestamp, type=message.type, app_id=message.app_id,
        expiration=message.expiration, reply_to=message.reply_to)


class Delivered(Protocol):
    """What the worker reads of a delivery and does with it: aio-pika's IncomingMessage, or
    the push consumer's Delivery."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, Any] | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def delivery_tag(self) -> int | None: ...
    @property
    def routing_key(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def content_encoding(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def app_id(self) -> str | None: ...

    async def ack(self, multiple: bool = False) -> None: ...
    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


class Delivery:
    """A delivery as the push consumer takes it: the client's frames as they came, read
    as aio-pika's IncomingMessage would be, without making one (and a task) per message:
    single-item pushes arrive by the thousand a second."""

    __slots__ = ("_message", "_properties")

    def __init__(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._message = message
        self._properties = message.header.properties

    body = property(lambda self: self._message.body)
    headers = property(lambda self: self._properties.headers)
    message_id = property(lambda self: self._properties.message_id)
    delivery_tag = property(lambda self: self._message.delivery_tag)
    routing_key = property(lambda self: self._message.routing_key)
    redelivered = property(lambda self: self._message.redelivered)
    content_type = property(lambda self: self._properties.content_type)
    content_encoding = property(lambda self: self._properties.content_encoding)
    priority = property(lambda self: self._properties.priority)
    correlation_id = property(lambda self: self._properties.correlation_id)
    timestamp = property(lambda self: self._properties.timestamp)
    type = property(lambda self: self._properties.message_type)
    app_id = property(lambda self: self._properties.app_id)

    def _channel(self) -> aiormq.abc.AbstractChannel:
        channel = self._message.channel
        if channel.is_closed:  # its node went away: the broker delivers it again
            raise aiormq.exceptions.ChannelInvalidStateError("the channel is closed")
        return channel

    async def ack(self, multiple: bool = False) -> None:
        await self._channel().basic_ack(self._message.delivery_tag or 0, multiple=multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        await self._channel().basic_nack(self._message.delivery_tag or 0, multiple=multiple,
                                         requeue=requeue)


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class _DeliveryQueue(aio_pika.RobustQueue):
    """A robust queue whose consumers take Deliveries: consumed again on the channel's
    restore (another node), as RobustQueue's are."""

    async def consume(self, callback: Any, no_ack: bool = False, exclusive: bool = False,
                      arguments: Any = None, consumer_tag: Any = None,
                      timeout: Any = None,  # noqa: ASYNC109 (RobustQueue.consume's own)
                      robust: bool = True) -> Any:
        handler: DeliveryHandler = callback

        async def delivered(message: aiormq.abc.DeliveredMessage) -> None:
            await handler(Delivery(message))

        channel = await self.channel.get_underlay_channel()
        ok = await channel.basic_consume(queue=self.name, consumer_callback=delivered,
                                         exclusive=exclusive, no_ack=no_ack,
                                         arguments=arguments, consumer_tag=consumer_tag,
                                         timeout=timeout)
        if ok.consumer_tag is None:
            raise RuntimeError("the broker gave no consumer tag")
        if robust:
            self._consumers[ok.consumer_tag] = {"callback": callback, "no_ack": no_ack,
                                                "exclusive": exclusive, "arguments": arguments}
        return ok.consumer_tag


async def delivery_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    """The queue `name` (declared already) on a robust channel, whose consumers take
    Deliveries (`consume(handler)` with an async handler of a Delivery)."""
    channel.QUEUE_CLASS = _DeliveryQueue
    return await channel.get_queue(name)


async def consume_deliveries(queue: AbstractQueue, handler: DeliveryHandler) -> str:
    """Consume a delivery_queue: `handler` takes each Delivery."""
    tag: str = await queue.consume(handler)  # type: ignore[arg-type]
    return tag


@dataclass
class Topology:
    channel: AbstractChannel
    exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    queues: dict[str, AbstractQueue]


async def declare(channel: AbstractChannel, delivery_limit: int) -> Topology:
    """Exchanges and quorum queues; every queue dead-letters into inventory.dead-letter."""
    exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                              durable=True)
    dlx = await channel.declare_exchange(C.DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT,
                                         durable=True)
    dlq = await channel.declare_queue(C.QUEUE_DEAD_LETTER, durable=True,
                                      arguments={"x-queue-type": "quorum"})
    await dlq.bind(dlx, routing_key="#")
    queues = {C.QUEUE_DEAD_LETTER: dlq}
    for name, key in ((C.QUEUE_PULL, C.ROUTING_PULL), (C.QUEUE_UPDATE, C.ROUTING_UPDATE)):
        queue = await channel.declare_queue(name, durable=True,
                                            arguments=queue_arguments(delivery_limit))
        await queue.bind(exchange, routing_key=key)
        queues[name] = queue
    return Topology(channel, exchange, dlx, queues)


def json_message(body: bytes, message_id: str | None = None, **kwargs: Any) -> aio_pika.Message:
    """A persistent JSON message with a fresh id and the publisher's time in milliseconds
    (timestamp_in_ms: it orders feed-updates that carry no inventoryUpdatedAt)."""
    headers = dict(kwargs.pop("headers", None) or {})
    headers.setdefault(C.HEADER_TIMESTAMP_MS, time.time_ns() // 1_000_000)
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id or str(uuid.uuid4()),
        headers=headers,
        **kwargs,
    )


async def publish_routed(exchange: AbstractExchange, message: aio_pika.Message,
                         routing_key: str, timeout_s: float = 30.0) -> None:
    """Publish `mandatory` and wait for the broker's confirm (the exchange's channel has
    publisher confirms). A message the broker returns (no queue bound to the routing key),
    nacks or never confirms raises TransientError."""
    try:
        result = await exchange.publish(message, routing_key=routing_key, mandatory=True,
                                        timeout=timeout_s)
    except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError,
            aiormq.exceptions.ChannelInvalidStateError) as exc:  # its node went away
        raise TransientError(f"message {message.message_id} to {routing_key} was not "
                             f"confirmed: {type(exc).__name__}: {exc}") from None
    if not isinstance(result, aiormq.spec.Basic.Ack):
        raise TransientError(f"message {message.message_id} was returned: no queue is bound "
                             f"to {routing_key}")


async def dead_letter(topology: Topology, message: AbstractIncomingMessage, reason: str,
                      queue_name: str) -> None:
    """Copy the message to the dead-letter queue with its reason, confirmed; then ack it."""
    await _copy_to_dead_letters(topology, message, reason, queue_name)
    await message.ack()


@dataclass(frozen=True)
class DeadLetterNote:
    """Why a message is dead-lettered: the reason (secrets masked), the error's class when
    an error caused it, and when the worker first received it (kept for replays)."""

    reason: str
    error_class: str = ""
    first_received: datetime | None = None


async def _copy_to_dead_letters(topology: Topology, message: Delivered,
                                reason: str | DeadLetterNote, queue_name: str) -> None:
    note = reason if isinstance(reason, DeadLetterNote) else DeadLetterNote(reason)
    headers = dict(message.headers or {})
    headers[C.HEADER_ERROR] = note.reason[:1000]
    if note.error_class:
        headers[C.HEADER_ERROR_CLASS] = note.error_class
    if note.first_received is not None and C.HEADER_FIRST_RECEIVED not in headers:
        headers[C.HEADER_FIRST_RECEIVED] = note.first_received.isoformat()
    headers[C.HEADER_DEAD_LETTERED_AT] = datetime.now(UTC).isoformat()
    headers[C.HEADER_ORIGINAL_ROUTING_KEY] = message.routing_key or ""
    headers[C.HEADER_ORIGINAL_QUEUE] = queue_name
    await topology.dead_letter_exchange.publish(copy_of(message, headers),
                                                routing_key=message.routing_key or "")


def copy_of(message: Delivered, headers: dict[str, Any]) -> aio_pika.Message:
    """A persistent copy of a delivered message (body and properties) with these headers:
    what dead-lettering and replaying publish."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


async def deliver(topology: Topology, message: AbstractIncomingMessage, handler: Handler,
                  queue_name: str) -> None:
    """The one place where a delivery is acked, requeued or dead-lettered."""
    bound = log.bind(message_id=message.message_id, queue=queue_name,
                     redelivered=message.redelivered)
    try:
        decision = await handler(message)
    except BadMessage as exc:
        bound.warning("message.dead_lettered", reason=str(exc), kind=exc.kind)
        await dead_letter(topology, message, str(exc), queue_name)
        metrics.MESSAGES.labels(queue_name, "dead").inc()
        metrics.DEAD_LETTERS.labels(queue_name, exc.kind).inc()
        return
    except asyncio.CancelledError:
        await _requeue(message)
        raise
    except Exception as exc:
        bound.warning("message.requeued", error=f"{type(exc).__name__}: {exc}")
        await _requeue(message)
        metrics.MESSAGES.labels(queue_name, Decision.REQUEUE.value).inc()
        return
    if decision is Decision.ACK:
        await message.ack()
    else:
        await _requeue(message)
    metrics.MESSAGES.labels(queue_name, decision.value).inc()


async def _requeue(message: Delivered) -> None:
    try:
        await message.nack(requeue=True)
    except Exception as exc:
        log.info("message.nack_failed", message_id=message.message_id, error=str(exc))


async def settle_group(topology: Topology,
                       decisions: Sequence[tuple[Delivered, DeadLetterNote | None]],
                       queue_name: str) -> None:
    """The one place where a push group's deliveries are settled, after its commit:
    (message, None) is acked, (message, note) dead-lettered with the note. The group holds
    every delivery of its channel up to its last one (the consumer takes them in order), so
    one ack with `multiple` settles them all once the dead-letter copies are confirmed."""
    if not decisions:
        return
    for message, note in decisions:
        if note is not None:
            log.warning("message.dead_lettered", message_id=message.message_id,
                        queue=queue_name, reason=note.reason)
            await _copy_to_dead_letters(topology, message, note, queue_name)
    last = max((m for m, _ in decisions), key=lambda m: m.delivery_tag or 0)
    await last.ack(multiple=True)


async def requeue_all(messages: Sequence[Delivered]) -> None:
    for message in messages:
        await _requeue(message)
