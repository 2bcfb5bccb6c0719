"""`feed-worker publish`: send messages with publisher confirms and `mandatory`.

Before anything is sent, the feed is checked as the daemon would check the message: a
pull-request or update it would only dead-letter is refused here, with the reason; so is,
unless asked for, an update of a pulled feed (taken, but undone by the feed's next pull).
"""

from __future__ import annotations

import asyncio
from typing import Any, TextIO

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from worker import broker
from worker import constants as C
from worker.claims import PULL_TYPES, check_pullable
from worker.errors import BadMessage, ConfigError, TransientError
from worker.messages import encode_pull, encode_update
from worker.settings import Settings
from worker.store import db, runs

BATCH = 50          # variants per feed-update message, as suppliers send them
IN_FLIGHT = 200     # unconfirmed messages at once
RESENDS = 10        # sends again of a message whose node went away before its confirm
RESEND_WAIT_S = 30.0  # for the connection to be on another node


async def check_feed(settings: Settings, feed_id: int, kind: str,
                     to_pulled_feed: bool = False) -> None:
    """Raise ConfigError with the reason when the daemon would dead-letter a message of
    this kind ("pull" or "update") for the feed (it does not exist, is disabled or its
    provider archived; a pull of a feed that is not pulled), or for an update of a pulled
    feed unless `to_pulled_feed`: the daemon takes it, but the feed's next pull sets its
    items back to what the file says."""
    conn = await db.connect(settings.database_url)
    try:
        feed = await runs.load_feed(conn, feed_id)
    finally:
        await conn.close()
    if kind == "pull":
        try:
            check_pullable(feed, feed_id)
        except BadMessage as exc:
            raise ConfigError(str(exc)) from None
        return
    if feed is None:
        raise ConfigError(f"feed {feed_id} does not exist")
    if not feed.enabled:
        raise ConfigError(f"feed {feed_id} is disabled")
    if feed.provider_archived:
        raise ConfigError(f"feed {feed_id} belongs to an archived dropship provider")
    if feed.resource_type in PULL_TYPES and not to_pulled_feed:
        raise ConfigError(
            f"feed {feed_id} is pulled (resource_type {feed.resource_type!r}): its next pull "
            "sets its items back to what its file says; push to a 'webhook' feed, or pass "
            "--to-pulled-feed")


async def publish_pull(settings: Settings, feed_id: int, force: bool = False) -> str:
    """The message id of the confirmed pull-request; raises when not confirmed or routed."""
    [message_id] = await _publish(settings, C.ROUTING_PULL, [encode_pull(feed_id, force)])
    return message_id


async def publish_update(settings: Settings, feed_id: int, variants: list[Any],
                         batch: int = BATCH) -> list[str]:
    """Split the variants into messages of `batch`; their ids, once all are confirmed."""
    if not variants:
        raise ConfigError("no variants to publish")
    bodies = [encode_update(feed_id, variants[i:i + batch])
              for i in range(0, len(variants), batch)]
    return await _publish(settings, C.ROUTING_UPDATE, bodies)


async def publish_held(settings: Settings, run_id: int) -> tuple[int, int, list[str]]:
    """The items a run held back by the daily SKU limit (its `daily limit` rejects, kept as
    feed-update variants), published to their feed: (feed id, variants, message ids).
    They go through the limit again when applied."""
    conn = await db.connect(settings.database_url)
    try:
        feed_id = await runs.run_feed(conn, run_id)
        if feed_id is None:
            raise ConfigError(f"run {run_id} does not exist")
        raws = await runs.held_items(conn, run_id)
    finally:
        await conn.close()
    if not raws:
        raise ConfigError(f"run {run_id} held no items back (no 'daily limit' rejects)")
    variants = [orjson.loads(raw) for raw in raws]
    return feed_id, len(variants), await publish_update(settings, feed_id, variants)


def read_variants(source: TextIO | bytes) -> list[Any]:
    data = source if isinstance(source, bytes) else source.read().encode()
    try:
        variants = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"the input is not JSON: {exc}") from None
    if not isinstance(variants, list):
        raise ConfigError("the input must be a JSON array of variants")
    return variants


async def _publish(settings: Settings, routing_key: str, bodies: list[bytes]) -> list[str]:
    connection = await broker.connect(settings.amqp_url)
    try:
        # on_return_raises: an unroutable `mandatory` message is an error, not a silent loss.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        messages = [broker.json_message(b) for b in bodies]
        queue = C.QUEUE_PULL if routing_key == C.ROUTING_PULL else C.QUEUE_UPDATE
        for i in range(0, len(messages), IN_FLIGHT):
            await _send(connection, exchange, messages[i:i + IN_FLIGHT], routing_key, queue)
        return [str(m.message_id) for m in messages]
    finally:
        await connection.close()


async def _send(connection: AbstractRobustConnection, exchange: AbstractExchange,
                messages: list[aio_pika.Message], routing_key: str, queue: str) -> None:
    """Publish and wait for the confirms. A message whose node went away before it was
    confirmed is sent again, with its message id, once the connection is on another node
    (at most RESENDS times; the daemon applies a message id once)."""
    for resend in range(RESENDS + 1):
        results = await asyncio.gather(
            *(exchange.publish(m, routing_key=routing_key, mandatory=True) for m in messages),
            return_exceptions=True)
        failed = [(m, r) for m, r in zip(messages, results, strict=True)
                  if isinstance(r, BaseException)]
        node_lost = [m for m, r in failed if isinstance(r, broker.NODE_LOST)]
        if failed and (len(node_lost) < len(failed) or resend == RESENDS):
            raise TransientError(
                f"the broker did not take {len(failed)} of {len(results)} message(s) "
                f"(is the worker's queue {queue} declared? start `feed-worker run` once): "
                f"{failed[0][1]}")
        if not failed:
            return
        await broker.wait_connected(connection, RESEND_WAIT_S)
        messages = [broker.again(m) for m in node_lost]
