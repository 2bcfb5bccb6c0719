"""Push groups meeting failures in the real Postgres: transient ones are retried in place and
in order, a message that fails alone is the only one dead-lettered, and replayed messages
report what they came to."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.integration.test_push import declare, settled, update
from tests.support import broker, feeds
from tests.support.feedserver import FeedServer
from tests.support.proxy import Proxy
from tests.support.services import AMQP_URL
from tests.support.wait import until
from worker import constants as C
from worker.settings import Settings


def fast_retries(settings: Settings, **kw: Any) -> Settings:
    return replace(settings, retry_base_s=0.05, retry_cap_s=0.5, **kw)


async def waiting_on_merge_lock(pool: asyncpg.Pool) -> int | None:
    """The pid of a backend waiting for a feed's merge lock, if one is."""
    return await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND wait_event = 'advisory' AND datname = current_database() LIMIT 1")


async def hold_merge_lock(pool: asyncpg.Pool, feed_id: int) -> asyncpg.Connection:
    conn: asyncpg.Connection = await pool.acquire()
    await conn.execute("BEGIN")
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", C.LOCK_CLASS_FEED_MERGE, feed_id)
    return conn


@pytest.mark.parametrize("ordering", ["none", "publisher"])
async def test_a_terminated_group_is_retried_before_later_ones(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings, ordering: str) -> None:
    """A (qty 1) is held at the merge lock, B (qty 2) queues behind it; A's backend is
    terminated. A is retried by the worker, in its turn: B, the newer, is the value kept,
    and nothing is dead-lettered."""
    settings = fast_retries(settings)
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    await declare(settings)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)

    def headers(offset: int) -> dict[str, Any]:
        return {C.HEADER_TIMESTAMP_MS: now_ms + offset} if ordering == "publisher" else {}

    async with broker.running_daemon(settings):
        for round_ in range(3):
            lock = await hold_merge_lock(pool, feed_id)
            try:
                await broker.publish(update(feed_id, {"externalId": "X", "inventoryQuantity":
                                                      10 * round_ + 1}),
                                     routing_key=C.ROUTING_UPDATE,
                                     headers=headers(10 * round_))
                pid = await until(lambda: waiting_on_merge_lock(pool),
                                  what="A's group waiting for the merge lock")
                await broker.publish(update(feed_id, {"externalId": "X", "inventoryQuantity":
                                                      10 * round_ + 2}),
                                     routing_key=C.ROUTING_UPDATE,
                                     headers=headers(10 * round_ + 1))
                assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await lock.execute("ROLLBACK")
                await pool.release(lock)
            await settled(pool, feed_id, 2 * (round_ + 1))
            x = (await feeds.items(pool, feed_id))["X"]
            assert x["inventory_quantity"] == 10 * round_ + 2
    assert await broker.dead_letters() == []
    history = await pool.fetch("SELECT old_quantity, new_quantity FROM variant_inventory_updates "
                               "WHERE inventory_feed_id = $1 ORDER BY id", feed_id)
    # Every write moved forward: 1 then 2, 11 then 12, 21 then 22.
    assert all((h["old_quantity"] or 0) < h["new_quantity"] for h in history)


async def test_a_message_that_fails_alone_is_the_only_one_dead_lettered(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    """A message that the database refuses for good (here a trigger refuses one external
    id) is found by splitting its group; its neighbours land."""
    settings = fast_retries(settings, push_batch_wait_s=0.5)
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    await pool.execute("""
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.external_id = 'POISON' THEN
                RAISE EXCEPTION 'item % refused', NEW.external_id;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON inventory_feed_variants
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();""")
    await declare(settings)
    for i in range(12):
        variants = [{"externalId": f"G{i}", "inventoryQuantity": i}]
        if i == 7:
            variants.append({"externalId": "POISON", "inventoryQuantity": 1})
        await broker.publish(update(feed_id, *variants), routing_key=C.ROUTING_UPDATE,
                             message_id=f"m{i}")
    async with broker.running_daemon(settings):
        await settled(pool, feed_id, 11)
    items = await feeds.items(pool, feed_id)
    assert sorted(items) == sorted(f"G{i}" for i in range(12) if i != 7)
    dead = await broker.dead_letters()
    assert [d.message_id for d in dead] == ["m7"]
    headers = dead[0].headers or {}
    assert "item POISON refused" in str(headers[C.HEADER_ERROR])
    assert headers[C.HEADER_ERROR_CLASS] == "RaiseError"
    assert C.HEADER_FIRST_RECEIVED in headers


async def test_a_message_whose_every_variant_is_rejected_is_a_success(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    await declare(settings)
    await broker.publish(update(feed_id, {"externalId": "C1", "inventoryQuantity": "1,5"}),
                         routing_key=C.ROUTING_UPDATE, message_id="all-rejected")
    async with broker.running_daemon(settings):
        await settled(pool, feed_id, 1)
    assert await broker.dead_letters() == []
    assert await feeds.items(pool, feed_id) == {}
    rejects = await pool.fetch("SELECT j.message_id, j.position, j.reason FROM feed_run_rejects j "
                               "JOIN feed_runs r ON r.id = j.run_id WHERE r.inventory_feed_id = $1",
                               feed_id)
    assert [(r["message_id"], r["position"]) for r in rejects] == [("all-rejected", 0)]
    assert "inventoryQuantity" in rejects[0]["reason"]


async def test_replayed_messages_report_their_outcome(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    """Messages sent back by a replay (x-replay-id) get a row in replay_outcomes: applied,
    stale (older than the stored item's order time), repeat, or dead-lettered again."""
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    replay = uuid.uuid4().hex
    now = datetime.now(UTC)
    await declare(settings)
    await broker.publish(update(feed_id, {"externalId": "S", "inventoryQuantity": 5}),
                         routing_key=C.ROUTING_UPDATE, message_id="current")
    async with broker.running_daemon(settings):
        await settled(pool, feed_id, 1)

        def replayed(body: bytes, message_id: str, first: datetime) -> Any:
            return broker.publish(body, routing_key=C.ROUTING_UPDATE, message_id=message_id,
                                  headers={C.HEADER_REPLAY_ID: replay,
                                           C.HEADER_FIRST_RECEIVED: first.isoformat()})

        await replayed(update(feed_id, {"externalId": "S", "inventoryQuantity": 1}),
                       "old", now - timedelta(days=2))
        await replayed(update(feed_id, {"externalId": "N", "inventoryQuantity": 3},
                              {"externalId": "N2", "inventoryQuantity": "x"}),
                       "new", now + timedelta(seconds=1))
        await replayed(update(feed_id, {"externalId": "S", "inventoryQuantity": 9}),
                       "current", now)
        await replayed(update(10**9, {"externalId": "S", "inventoryQuantity": 9}),
                       "nofeed", now)
        rows = await until(lambda: _outcomes(pool, replay, 4),
                           what="four replay outcomes recorded")
    got = {r["message_id"]: (r["outcome"], r["applied"], r["stale"], r["rejected"])
           for r in rows}
    assert got == {"old": ("stale", 0, 1, 0), "new": ("applied", 1, 0, 1),
                   "current": ("repeat", 0, 0, 0), "nofeed": ("dead-lettered", 0, 0, 0)}
    assert (await feeds.items(pool, feed_id))["S"]["inventory_quantity"] == 5
    reason = next(r["reason"] for r in rows if r["message_id"] == "nofeed")
    assert "does not exist" in reason


async def _outcomes(pool: asyncpg.Pool, replay: str, n: int) -> list[asyncpg.Record] | None:
    rows = await pool.fetch("SELECT * FROM replay_outcomes WHERE replay_id = $1", replay)
    return rows if len(rows) >= n else None


async def test_an_update_is_stale_against_a_newer_unchanged_one(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    """B repeats the stored value with a newer time: nothing changes but the item's order
    time, so that A, older, arriving after B is still skipped."""
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    t0 = datetime.now(UTC)

    def at(seconds: int) -> dict[str, Any]:
        return {C.HEADER_TIMESTAMP_MS: int((t0 + timedelta(seconds=seconds)).timestamp() * 1000)}

    await declare(settings)
    async with broker.running_daemon(settings):
        await broker.publish(update(feed_id, {"externalId": "U", "inventoryQuantity": 1}),
                             routing_key=C.ROUTING_UPDATE, headers=at(0))
        await settled(pool, feed_id, 1)
        before = (await feeds.items(pool, feed_id))["U"]
        await broker.publish(update(feed_id, {"externalId": "U", "inventoryQuantity": 1}),
                             routing_key=C.ROUTING_UPDATE, headers=at(20))
        await settled(pool, feed_id, 2)
        await broker.publish(update(feed_id, {"externalId": "U", "inventoryQuantity": 7}),
                             routing_key=C.ROUTING_UPDATE, headers=at(10))
        await settled(pool, feed_id, 3)
    u = (await feeds.items(pool, feed_id))["U"]
    assert u["inventory_quantity"] == 1
    assert u["ordered_at"] == t0.replace(microsecond=t0.microsecond // 1000 * 1000) + \
        timedelta(seconds=20)
    assert u["updated_at"] == before["updated_at"]  # only the order time was written
    runs = await pool.fetch("SELECT updated, unchanged, details FROM feed_runs "
                            "WHERE inventory_feed_id = $1 AND kind = 'push'", feed_id)
    assert sum(r["updated"] for r in runs) == 0
    assert sum(orjson.loads(r["details"])["stale"] for r in runs) == 1


async def test_a_replayed_push_older_than_a_pull_is_stale(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    """A pull writes its start as the items' order time: a push received before it and
    replayed after it is stale, and leaves the pulled value."""
    url = feed_server.add("/stock.csv", b"external_id,qty\nP,8\n")
    feed_id = await feeds.make_feed(pool, url)
    received = datetime.now(UTC) - timedelta(hours=1)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded"
    p = (await feeds.items(pool, feed_id))["P"]
    assert p["ordered_at"] == run["started_at"]
    await declare(settings)
    await broker.publish(update(feed_id, {"externalId": "P", "inventoryQuantity": 1}),
                         routing_key=C.ROUTING_UPDATE,
                         headers={C.HEADER_FIRST_RECEIVED: received.isoformat()})
    async with broker.running_daemon(settings):
        await settled(pool, feed_id, 1)
    assert (await feeds.items(pool, feed_id))["P"]["inventory_quantity"] == 8


def _consuming(queue: str) -> bool:
    """Whether the broker lists a consumer on the queue (a quorum queue's declare-ok still
    counts a cancelled consumer that holds unacked messages)."""
    vhost = unquote(urlsplit(AMQP_URL).path[1:]) or "/"
    out = subprocess.run(["rabbitmqctl", "list_consumers", "-q", "-p", vhost, "queue_name"],
                         capture_output=True, text=True, check=True).stdout
    return queue in out.split()


async def _async(check: Callable[[], bool]) -> bool:
    return check()


def _paused() -> bool:
    return REGISTRY.get_sample_value("feed_worker_push_paused") == 1


async def test_pushes_pause_while_the_database_is_away_and_resume(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings) -> None:
    """The daemon reaches Postgres through a proxy that is cut for longer than the retry
    policy: push consumption pauses (no consumer on the queue, nothing requeued), then
    resumes by itself once the database answers; every message lands, none is
    dead-lettered."""
    proxy = await Proxy("127.0.0.1", 5432).start()
    dsn = settings.database_url.replace("127.0.0.1:5432", proxy.address())
    assert dsn != settings.database_url
    settings = fast_retries(replace(settings, database_url=dsn), retry_attempts=2)
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    try:
        await declare(settings)
        async with broker.running_daemon(settings):
            await broker.publish(update(feed_id, {"externalId": "A", "inventoryQuantity": 1}),
                                 routing_key=C.ROUTING_UPDATE)
            await settled(pool, feed_id, 1)
            proxy.cut()
            for i in range(20):
                await broker.publish(update(feed_id, {"externalId": "A",
                                                      "inventoryQuantity": i + 2}),
                                     routing_key=C.ROUTING_UPDATE)
            await until(lambda: _async(_paused), what="push consumption paused")
            assert not _consuming(C.QUEUE_UPDATE)
            proxy.heal()
            await settled(pool, feed_id, 21)
            assert not _paused()
            assert _consuming(C.QUEUE_UPDATE)
    finally:
        await proxy.close()
    assert (await feeds.items(pool, feed_id))["A"]["inventory_quantity"] == 21
    assert await broker.dead_letters() == []
