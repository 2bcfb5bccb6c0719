"""AMQP_URL with several nodes, against the real broker: a node that refuses is passed
over, and a connection whose node goes away moves to the next one, where its queue and
consumer are declared again. The "nodes" are the one broker reached through proxies on
loopback that the test closes (a real network fault, nothing mocked)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import replace

import aio_pika
import asyncpg
import pytest
from yarl import URL

from tests.support import broker as test_broker
from tests.support import feeds
from tests.support.proxy import Mode, Proxy
from tests.support.services import AMQP_URL
from tests.support.wait import until
from worker import broker
from worker import constants as C
from worker.errors import Unavailable
from worker.failover import FailoverConnection
from worker.publish import publish_update
from worker.settings import Settings


def closed_port() -> int:
    """A loopback port that nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def send(queue: str, body: bytes) -> bool:
    """Publish to a queue through the default exchange (a connection of its own, straight
    to the broker), confirmed; False when no queue of that name is there to take it."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            await channel.default_exchange.publish(aio_pika.Message(body), queue,
                                                   mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            return False
    return True


def via(port: int, password: str | None = None) -> str:
    url = URL(AMQP_URL).with_host("127.0.0.1").with_port(port)
    return str(url.with_password(password) if password else url)


async def test_the_first_node_that_answers_is_used(services: None) -> None:
    refused = via(closed_port())
    connection = await broker.connect(f"{refused},{AMQP_URL}")
    try:
        assert isinstance(connection, FailoverConnection)
        assert connection.node_index == 1
        channel = await connection.channel()
        queue = await channel.declare_queue(f"fw-failover-{uuid.uuid4().hex[:8]}",
                                            exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"hello"), queue.name)
        got = await until(lambda: queue.get(no_ack=True, fail=False), what="the message")
        assert got.body == b"hello"
    finally:
        await connection.close()


async def test_no_node_answering_names_each_masked(services: None) -> None:
    first, second = via(closed_port(), "s3cret-one"), via(closed_port(), "s3cret-two")
    with pytest.raises(Unavailable) as caught:
        await broker.connect(f"{first},{second}", timeout_s=2)
    text = str(caught.value)
    assert "s3cret" not in text
    assert URL(first).authority.replace("s3cret-one", "***") in text
    assert URL(second).authority.replace("s3cret-two", "***") in text


async def test_a_lost_node_is_left_for_the_next_with_queue_and_consumer(
        services: None) -> None:
    target = URL(AMQP_URL)
    node_a = await Proxy(target.host or "127.0.0.1", target.port or 5672).start()
    node_b = await Proxy(target.host or "127.0.0.1", target.port or 5672).start()
    connection = await broker.connect(f"{via(node_a.port)},{via(node_b.port)}")
    try:
        assert isinstance(connection, FailoverConnection)
        assert (connection.node_index, node_a.accepted, node_b.accepted) == (0, 1, 0)
        channel = await connection.channel()
        # Exclusive: the broker deletes it with the connection, so it is there after the
        # failover only when it was declared again.
        queue = await channel.declare_queue(f"fw-failover-{uuid.uuid4().hex[:8]}",
                                            exclusive=True)
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await received.put(message.body)
            await message.ack()

        await queue.consume(on_message)
        assert await send(queue.name, b"before")
        assert await asyncio.wait_for(received.get(), 10) == b"before"

        await node_a.close()  # the node goes away: open connections cut, new ones refused

        async def moved() -> bool:
            return connection.node_index == 1 and connection.connected.is_set()

        await until(moved, timeout_s=20, what="the connection to move to the second node")
        assert connection.failovers == 1
        assert node_b.accepted >= 1  # one more when a first try timed out under load

        async def delivered() -> bytes | None:
            if not await send(queue.name, b"after"):
                return None  # not declared again yet
            return await asyncio.wait_for(received.get(), 10)

        assert await until(delivered, timeout_s=20, what="the queue declared again") == b"after"
    finally:
        await connection.close()
        await node_b.close()


async def test_the_daemon_and_publish_skip_a_node_that_refuses(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    two = replace(settings, amqp_url=f"{via(closed_port())},{AMQP_URL}")
    async with test_broker.running_daemon(two) as daemon:
        assert isinstance(daemon.connection, FailoverConnection)
        assert daemon.connection.node_index == 1
        ids = await publish_update(two, feed_id, [{"externalId": "A", "inventoryQuantity": 4}])
        assert len(ids) == 1

        async def applied() -> bool:
            got = await feeds.items(pool, feed_id)
            return got.get("A", {}).get("inventory_quantity") == 4

        await until(applied, what="the update applied")


async def test_the_daemons_pushes_go_on_from_the_next_node(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    # The push consumer takes the client's deliveries as they come (broker.Delivery): its
    # queue is consumed again on the next node as any robust queue's.
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    target = URL(AMQP_URL)
    node_a = await Proxy(target.host or "127.0.0.1", target.port or 5672).start()
    node_b = await Proxy(target.host or "127.0.0.1", target.port or 5672).start()
    two = replace(settings, amqp_url=f"{via(node_a.port)},{via(node_b.port)}")
    try:
        async with test_broker.running_daemon(two) as daemon:
            connection = daemon.connection
            assert isinstance(connection, FailoverConnection)

            async def quantity(n: int) -> bool:
                got = await feeds.items(pool, feed_id)
                return got.get("A", {}).get("inventory_quantity") == n

            await publish_update(settings, feed_id, [{"externalId": "A", "inventoryQuantity": 1}])
            await until(lambda: quantity(1), what="the first update applied")
            await node_a.close()

            async def moved() -> bool:
                return connection.node_index == 1 and connection.connected.is_set()

            await until(moved, timeout_s=20, what="the daemon to move to the second node")
            await publish_update(settings, feed_id, [{"externalId": "A", "inventoryQuantity": 2}])
            await until(lambda: quantity(2), timeout_s=20,
                        what="the update after the failover applied")
        assert await test_broker.queue_depth(C.QUEUE_UPDATE) == 0
    finally:
        await node_a.close()
        await node_b.close()


async def test_publish_sends_again_on_the_next_node_what_the_lost_one_did_not_confirm(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    connection = await broker.connect(AMQP_URL)
    await broker.declare(await connection.channel(), settings.delivery_limit)
    target = URL(AMQP_URL)
    node_a = await Proxy(target.host or "127.0.0.1", target.port or 5672).start()
    node_a.cut_after = 40_000  # the node goes away a few messages into the publish
    try:
        variants = [{"externalId": f"E{i}", "inventoryQuantity": i} for i in range(5000)]
        two = replace(settings, amqp_url=f"{via(node_a.port)},{AMQP_URL}")
        ids = await publish_update(two, feed_id, variants)
        assert len(ids) == 100
        assert node_a.mode is Mode.CUT
        channel = await connection.channel()
        queue = await channel.get_queue(C.QUEUE_UPDATE)
        queued = set()
        while (message := await queue.get(no_ack=True, fail=False, timeout=10)) is not None:
            queued.add(message.message_id)
        assert queued == set(ids)  # each taken (some may be there twice: ids dedupe them)
    finally:
        await connection.close()
        await node_a.close()


async def test_a_node_that_takes_the_connection_but_hangs_is_left_for_the_next(
        services: None) -> None:
    target = URL(AMQP_URL)
    hanging = await Proxy(target.host or "127.0.0.1", target.port or 5672).start()
    hanging.blackhole()  # TCP accepted, nothing answered
    try:
        connection = await asyncio.wait_for(
            broker.connect(f"{via(hanging.port)},{AMQP_URL}", timeout_s=1), 10)
        try:
            assert isinstance(connection, FailoverConnection)
            assert connection.node_index == 1
            assert hanging.accepted == 1
        finally:
            await connection.close()
    finally:
        await hanging.close()
