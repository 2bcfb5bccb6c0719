"""Push: feed-update messages applied in micro-batches by the daemon, real broker and DB."""

from __future__ import annotations

import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from tests.support import broker, feeds
from tests.support.process import DaemonProcess
from tests.support.wait import until
from worker import constants as C
from worker.publish import publish_update
from worker.settings import Settings
from worker.store import push as push_store


async def declare(settings: Settings) -> None:
    """Declare the topology (as a daemon does) so messages can wait in the queue."""
    async with broker.running_daemon(settings):
        pass


def update(feed_id: int, *variants: dict[str, Any]) -> bytes:
    return orjson.dumps({"feedId": feed_id, "variants": list(variants)})


async def push_runs(pool: asyncpg.Pool, feed_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM feed_runs WHERE kind = 'push' AND "
                            "inventory_feed_id = $1 ORDER BY id", feed_id)
    return [dict(r) for r in rows]


async def settled(pool: asyncpg.Pool, feed_id: int, messages: int) -> None:
    """Wait until the push runs of the feed account for this many messages."""
    async def check() -> bool:
        runs = await push_runs(pool, feed_id)
        return sum(int(orjson.loads(r["details"])["messages"]) for r in runs) >= messages

    await until(check, what=f"{messages} message(s) of feed {feed_id} applied")
    await until(lambda: _empty(C.QUEUE_UPDATE), what="the queue to drain")


async def _empty(queue: str) -> bool:
    return await broker.queue_depth(queue) == 0


async def test_published_variants_land_in_batches(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    variants = [{"externalId": f"P{i}", "vendorSku": f"S{i}", "inventoryQuantity": i,
                 "retailPrice": "1.50", "color": "red"} for i in range(120)]
    async with broker.running_daemon(settings):
        ids = await publish_update(settings, feed_id, variants)
        assert len(ids) == 3  # 50 + 50 + 20
        await settled(pool, feed_id, 3)
    got = await feeds.items(pool, feed_id)
    assert len(got) == 120
    assert got["P7"]["inventory_quantity"] == 7
    assert got["P7"]["retail_price"] == Decimal("1.50")
    assert orjson.loads(got["P7"]["extra"]) == {"color": "red"}  # unknown attributes kept
    runs = await push_runs(pool, feed_id)
    assert sum(r["inserted"] for r in runs) == 120
    assert sum(r["rows_read"] for r in runs) == 120
    assert {r["status"] for r in runs} == {"succeeded"}


async def test_partial_updates_keep_what_they_leave_out(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    async with broker.running_daemon(settings):
        await broker.publish(update(feed_id, {"externalId": "A", "name": "Lamp", "vendorSku": "L1",
                                              "retailPrice": 20, "inventoryQuantity": 3}),
                             routing_key=C.ROUTING_UPDATE, message_id="m1")
        await settled(pool, feed_id, 1)
        await broker.publish(update(feed_id, {"externalId": "A", "inventoryQuantity": 9}),
                             routing_key=C.ROUTING_UPDATE, message_id="m2")
        await settled(pool, feed_id, 2)
        a = (await feeds.items(pool, feed_id))["A"]
        assert (a["inventory_quantity"], a["name"], a["retail_price"]) == (9, "Lamp", 20)
        await broker.publish(update(feed_id, {"externalId": "A", "name": None}),
                             routing_key=C.ROUTING_UPDATE, message_id="m3")
        await settled(pool, feed_id, 3)
    a = (await feeds.items(pool, feed_id))["A"]
    assert (a["inventory_quantity"], a["name"], a["vendor_sku"]) == (9, None, "L1")


async def test_one_group_poison_and_rejects_and_later_wins(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    """Messages waiting in the queue are taken as one group: the bad ones go to the
    dead-letter queue, bad variants are rejects, the rest lands; later wins per item."""
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    await declare(settings)
    await broker.publish(update(feed_id, {"externalId": "X", "inventoryQuantity": 1},
                                {"externalId": "Y", "inventoryQuantity": "lots"},
                                {"inventoryQuantity": 4}),
                         routing_key=C.ROUTING_UPDATE, message_id="g1")
    await broker.publish(b"{not json", routing_key=C.ROUTING_UPDATE, message_id="g2")
    await broker.publish(update(999999, {"externalId": "Z"}), routing_key=C.ROUTING_UPDATE,
                         message_id="g3")
    await broker.publish(update(feed_id, {"externalId": "X", "inventoryQuantity": 2},
                                {"externalId": "W", "retailPrice": "9.99 euros"}),
                         routing_key=C.ROUTING_UPDATE, message_id="g4")
    async with broker.running_daemon(settings):
        await settled(pool, feed_id, 2)
        dead = await until(broker.dead_letters, what="the poison messages")
    got = await feeds.items(pool, feed_id)
    assert set(got) == {"X"}
    assert got["X"]["inventory_quantity"] == 2  # the later message of the group won
    reasons = {m.message_id: str((m.headers or {})[C.HEADER_ERROR]) for m in dead}
    assert set(reasons) == {"g2", "g3"}
    assert "not JSON" in reasons["g2"]
    assert "feed 999999 does not exist" in reasons["g3"]
    [run] = await push_runs(pool, feed_id)
    assert (run["rows_read"], run["inserted"], run["rejected"], run["duplicates"]) == (5, 1, 3, 1)
    rejects = await pool.fetch("SELECT message_id, position, reason FROM feed_run_rejects "
                               "WHERE run_id = $1 ORDER BY message_id, position", run["id"])
    assert [(r["message_id"], r["position"]) for r in rejects] == [("g1", 1), ("g1", 2),
                                                                   ("g4", 1)]
    assert "whole number" in rejects[0]["reason"]
    assert "externalId" in rejects[1]["reason"]
    assert "retailPrice" in rejects[2]["reason"]


async def test_an_older_update_never_overwrites_a_newer_one(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    now = datetime.now(UTC)
    newer = {"externalId": "T", "inventoryQuantity": 5, "inventoryUpdatedAt": now.isoformat()}
    older = {"externalId": "T", "inventoryQuantity": 1,
             "inventoryUpdatedAt": (now - timedelta(minutes=5)).isoformat()}
    async with broker.running_daemon(settings):
        await broker.publish(update(feed_id, newer), routing_key=C.ROUTING_UPDATE)
        await settled(pool, feed_id, 1)
        await broker.publish(update(feed_id, older), routing_key=C.ROUTING_UPDATE)
        # The publisher's timestamp_in_ms stands in when a variant has no time of its own.
        await broker.publish(update(feed_id, {"externalId": "T", "inventoryQuantity": 2}),
                             routing_key=C.ROUTING_UPDATE, headers={
                                 C.HEADER_TIMESTAMP_MS:
                                     int((now - timedelta(hours=1)).timestamp() * 1000)})
        await settled(pool, feed_id, 3)
    t = (await feeds.items(pool, feed_id))["T"]
    assert t["inventory_quantity"] == 5
    assert t["inventory_updated_at"] == now
    runs = await push_runs(pool, feed_id)
    # Both older updates were stale (counted once if they shared a micro-batch).
    assert sum(orjson.loads(r["details"])["stale"] for r in runs) in (1, 2)


async def test_out_of_order_within_one_group(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    await declare(settings)
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    await broker.publish(update(feed_id, {"externalId": "Q", "inventoryQuantity": 8,
                                          "inventoryUpdatedAt": (t0 + timedelta(1)).isoformat()}),
                         routing_key=C.ROUTING_UPDATE)
    await broker.publish(update(feed_id, {"externalId": "Q", "inventoryQuantity": 3,
                                          "name": "kept",
                                          "inventoryUpdatedAt": t0.isoformat()}),
                         routing_key=C.ROUTING_UPDATE)
    async with broker.running_daemon(settings):
        await settled(pool, feed_id, 2)
    q = (await feeds.items(pool, feed_id))["Q"]
    assert (q["inventory_quantity"], q["name"]) == (8, "kept")


async def test_a_redelivered_or_replayed_message_changes_nothing(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    first = update(feed_id, {"externalId": "R", "inventoryQuantity": 5})
    async with broker.running_daemon(settings):
        await broker.publish(first, routing_key=C.ROUTING_UPDATE, message_id="once")
        await settled(pool, feed_id, 1)
        await broker.publish(update(feed_id, {"externalId": "R", "inventoryQuantity": 7}),
                             routing_key=C.ROUTING_UPDATE, message_id="twice")
        await settled(pool, feed_id, 2)
        await broker.publish(first, routing_key=C.ROUTING_UPDATE, message_id="once")
        await until(lambda: _empty(C.QUEUE_UPDATE), what="the replay to be consumed")
        await until(lambda: _remembered(pool, "once"), what="the id to stay remembered")
    assert (await feeds.items(pool, feed_id))["R"]["inventory_quantity"] == 7
    runs = await push_runs(pool, feed_id)
    assert sum(orjson.loads(r["details"])["messages"] for r in runs) == 2


async def _remembered(pool: asyncpg.Pool, message_id: str) -> bool:
    return await pool.fetchval("SELECT count(*) FROM processed_messages WHERE message_id = $1",
                               message_id) == 1


async def test_remembered_ids_expire(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO processed_messages (message_id, processed_at) VALUES "
                       "('old', now() - interval '8 days'), ('new', now())")
    assert await push_store.forget_old(pool, 7 * 24 * 3600.0) == 1
    rows = await pool.fetch("SELECT message_id FROM processed_messages")
    assert [r["message_id"] for r in rows] == ["new"]


async def test_many_messages_many_items(clean_broker: None, pool: asyncpg.Pool,
                                        settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    variants = [{"externalId": f"K{i % 700}", "inventoryQuantity": i} for i in range(3000)]
    async with broker.running_daemon(settings):
        await publish_update(settings, feed_id, variants)
        await settled(pool, feed_id, 60)
    got = await feeds.items(pool, feed_id)
    assert len(got) == 700
    # Messages are applied in order, so every item has its last value.
    last = {f"K{i % 700}": i for i in range(3000)}
    assert {k: v["inventory_quantity"] for k, v in got.items()} == last


async def test_small_batches_in_the_pipeline_still_land_in_order(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    # Batches of 100 variants: while one merges the next is staged; the merges take turns.
    small = replace(settings, push_batch_variants=100)
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    variants = [{"externalId": f"K{i % 97}", "inventoryQuantity": i} for i in range(4000)]
    await declare(small)
    ids = await publish_update(small, feed_id, variants)  # queued before the daemon starts
    async with broker.running_daemon(small):
        await settled(pool, feed_id, len(ids))
    got = await feeds.items(pool, feed_id)
    last = {f"K{i % 97}": i for i in range(4000)}
    assert {k: v["inventory_quantity"] for k, v in got.items()} == last
    runs = await push_runs(pool, feed_id)
    batches = sum(int(orjson.loads(r["details"])["batches"]) for r in runs)
    assert batches >= 40  # 80 messages of 50, two to a batch at most
    assert sum(r["rows_read"] for r in runs) == 4000


async def test_sigterm_mid_stream_loses_nothing_and_applies_nothing_twice(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        processes: list[DaemonProcess]) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    await declare(settings)
    messages = 300
    for m in range(messages):
        await broker.publish(
            update(feed_id, *({"externalId": f"S{v}", "inventoryQuantity": m}
                              for v in range(m % 7, 400, 7))),
            routing_key=C.ROUTING_UPDATE, message_id=f"s{m}")
    daemon = DaemonProcess(settings.database_url, "pushing", FEED_WORKER_PUSH_BATCH_VARIANTS="300",
                           FEED_WORKER_PUSH_PREFETCH="50", FEED_WORKER_LOG_LEVEL="debug")
    processes.append(daemon)
    await daemon.start()
    try:
        await daemon.wait_event("push.group_applied")
    except TimeoutError:
        raise AssertionError(daemon.events[-6:]) from None
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    applied_before = await _messages_applied(pool, feed_id)
    assert 0 < applied_before < messages  # stopped part-way
    async with broker.running_daemon(settings):
        await settled(pool, feed_id, messages)
    assert await _messages_applied(pool, feed_id) == messages  # each exactly once
    got = await feeds.items(pool, feed_id)
    last = {f"S{v}": m for m in range(messages) for v in range(m % 7, 400, 7)}
    assert {k: r["inventory_quantity"] for k, r in got.items()} == last


async def _messages_applied(pool: asyncpg.Pool, feed_id: int) -> int:
    return sum(int(orjson.loads(r["details"])["messages"]) for r in await push_runs(pool, feed_id))

