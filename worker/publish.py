"""`feed-worker publish`: send messages with publisher confirms and `mandatory`."""

from __future__ import annotations

import aio_pika

from worker import broker
from worker import constants as C
from worker.errors import TransientError
from worker.messages import encode_pull
from worker.settings import Settings


async def publish_pull(settings: Settings, feed_id: int, force: bool = False) -> str:
    """The message id of the confirmed pull-request; raises when not confirmed or routed."""
    connection = await broker.connect(settings.amqp_url)
    try:
        # on_return_raises: an unroutable `mandatory` message is an error, not a silent loss.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        message = broker.json_message(encode_pull(feed_id, force))
        try:
            await exchange.publish(message, routing_key=C.ROUTING_PULL, mandatory=True)
        except aio_pika.exceptions.DeliveryError as exc:
            raise TransientError(
                f"the broker did not take the message (is the worker's queue "
                f"{C.QUEUE_PULL} declared? start `feed-worker run` once): {exc}"
            ) from None
        return str(message.message_id)
    finally:
        await connection.close()
