"""The commands as a user runs them: real processes, real services."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractQueue

from tests.support import broker, feeds
from tests.support.commands import feed_worker
from tests.support.feedserver import FeedServer
from tests.support.services import AMQP_URL, dsn_for
from tests.support.wait import until
from worker import constants as C
from worker.settings import Settings
from worker.store.migrate import discover


async def test_import_succeeds_with_a_summary(pool: asyncpg.Pool, db_url: str,
                                              feed_server: FeedServer) -> None:
    url = feed_server.add("/f.csv", b"external_id,qty\nA,1\nB,x\n", auth=("u", "hunter2"))
    feed_id = await feeds.make_feed(pool, feed_server.url("/f.csv", "u", "hunter2"))
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 0, err
    assert re.search(r"run \d+ succeeded: rows_read=2 inserted=1 .* rejected=1", err)
    assert "progress bytes=" in err  # plain progress lines when not on a terminal
    assert "hunter2" not in err
    assert url  # the route is served with auth
    assert len(await feeds.items(pool, feed_id)) == 1


async def test_import_of_a_failing_feed_exits_1(pool: asyncpg.Pool, db_url: str,
                                                 feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.url("/missing.csv", "u", "hunter2"))
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 1
    assert "failed" in err
    assert "HTTP 404" in err
    assert "hunter2" not in err


async def test_import_of_a_feed_with_a_bad_mapping_fails_before_the_download(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    url = feed_server.add("/f.json", b'[{"externalId": "A"}]', content_type="application/json")
    feed_id = await feeds.make_feed(pool, url, resource_type="json",
                                    mapping={"format": "csv"})
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 1
    assert "failed" in err
    assert "error: mapping.format 'csv': use \"json\" or \"ndjson\"" in err
    assert feed_server.routes["/f.json"].requests == 0


async def test_import_with_another_url_and_of_an_unknown_feed(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, None)
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 2
    assert "no resource_location" in err
    assert await pool.fetchval("SELECT count(*) FROM feed_runs") == 0
    url = feed_server.add("/other.csv", b"external_id,qty\nZ,3\n")
    code, _, err = await feed_worker("import", "--feed", str(feed_id), "--url", url,
                                     database_url=db_url)
    assert code == 0, err
    code, _, err = await feed_worker("import", "--feed", "424242", database_url=db_url)
    assert code == 2
    assert "feed 424242 does not exist" in err


async def test_import_dry_run_changes_nothing_and_force_applies(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    url = feed_server.add("/shrink.csv", b"external_id,qty\nA,1\nB,1\nC,1\n")
    feed_id = await feeds.make_feed(pool, url, fetch_cleanup="enabled")
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 0, err
    feed_server.add("/shrink.csv", b"external_id,qty\nA,2\nD,1\n")
    before = await feeds.database_state(pool)
    code, _, err = await feed_worker("import", "--feed", str(feed_id), "--dry-run",
                                     database_url=db_url)
    assert code == 0, err
    assert "dry run (nothing was changed)" in err
    assert re.search(r"inserted=1 updated=1 unchanged=0 zeroed=2 ", err)
    assert "the run would be held by the zeroed rule: cleanup would zero 2 of the feed's 3 " \
        "items" in err
    assert await feeds.database_state(pool) == before
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 1
    assert re.search(r"run \d+ held: .*zeroed=2", err)
    code, _, err = await feed_worker("import", "--feed", str(feed_id), "--force",
                                     database_url=db_url)
    assert code == 0, err
    assert re.search(r"run \d+ succeeded: .*zeroed=2", err)


async def test_check_answers_for_probes(db_url: str) -> None:
    code, _, err = await feed_worker("check", database_url=db_url)
    assert code == 0, err
    code, _, err = await feed_worker("check", database_url=db_url,
                                     AMQP_URL="amqp://guest:topsecret@127.0.0.1:1/")
    assert code == 1
    assert "rabbitmq" in err
    assert "topsecret" not in err
    code, _, err = await feed_worker("check", database_url=dsn_for("no_such_db_here"))
    assert code == 1
    assert "postgres" in err


async def test_migrate_creates_the_database_and_replicas_may_race(services: None) -> None:
    name = "fw_test_migrate_race"
    admin = await asyncpg.connect(dsn_for("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        url = dsn_for(name)
        results = await asyncio.gather(
            *(feed_worker("migrate", database_url=url) for _ in range(3)))
        assert [code for code, _, _ in results] == [0, 0, 0], results
        applied = [out for _, out, _ in results if "0001_init.sql" in out]
        assert len(applied) == 1  # exactly one replica applied them
        conn = await asyncpg.connect(url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_migrations")
            assert sorted(r["version"] for r in versions) == [m.version for m in discover()]
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()



@contextlib.asynccontextmanager
async def bound_queue(routing_key: str) -> AsyncIterator[AbstractQueue]:
    """A private queue that receives what is published with the routing key."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(exchange, routing_key)
        yield queue


async def test_publish_is_confirmed_or_fails_loudly(clean_broker: None, pool: asyncpg.Pool,
                                                     db_url: str) -> None:
    feed_id = await feeds.make_feed(pool, "https://feeds.example/stock.csv")
    # Nothing bound to feed.pull yet: the broker cannot route it, and the command says so.
    code, _, err = await feed_worker("publish", "pull", "--feed", str(feed_id),
                                     database_url=db_url)
    assert code == 1
    assert "did not take" in err
    async with bound_queue(C.ROUTING_PULL) as queue:
        code, out, err = await feed_worker("publish", "pull", "--feed", str(feed_id), "--force",
                                           database_url=db_url)
        assert code == 0, err
        message = await queue.get(timeout=5)
        assert message.body == b'{"feedId":%d,"force":true}' % feed_id
        assert message.message_id is not None
        assert message.message_id in out
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_publish_update_splits_a_file_into_confirmed_messages(
        clean_broker: None, pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    feed = str(await feeds.make_feed(pool, None, resource_type="webhook"))
    variants = [{"externalId": f"V{i}", "inventoryQuantity": i} for i in range(120)]
    path = tmp_path / "variants.json"
    path.write_bytes(orjson.dumps(variants))
    code, _, err = await feed_worker("publish", "update", "--feed", feed, str(path),
                                     database_url=db_url)
    assert code == 1  # nothing bound to feed.update: unroutable, and said so
    assert "did not take" in err
    async with bound_queue(C.ROUTING_UPDATE) as queue:
        code, out, err = await feed_worker("publish", "update", "--feed", feed, str(path),
                                           database_url=db_url)
        assert code == 0, err
        assert f"120 variant(s) of feed {feed} in 3 message(s)" in out
        bodies, ids = [], set()
        for _ in range(3):
            message = await queue.get(timeout=5)
            bodies.append(orjson.loads(message.body))
            ids.add(message.message_id)
        assert [len(b["variants"]) for b in bodies] == [50, 50, 20]
        assert {b["feedId"] for b in bodies} == {int(feed)}
        assert [v for b in bodies for v in b["variants"]] == variants
        assert len(ids) == 3
        assert None not in ids
    path.write_text("{not json")
    code, _, err = await feed_worker("publish", "update", "--feed", feed, str(path),
                                     database_url=db_url)
    assert code == 2  # nothing was sent: the input is wrong
    assert "not JSON" in err


async def test_replay_lists_and_requeues_dead_letters(clean_broker: None, pool: asyncpg.Pool,
                                                      db_url: str, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    async with broker.running_daemon(settings):
        pass  # the topology, declared
    # Dead-lettered while the feed was disabled; then the feed is fixed and they are replayed.
    await pool.execute("UPDATE inventory_feeds SET enabled = false WHERE id = $1", feed_id)
    body = orjson.dumps({"feedId": feed_id,
                         "variants": [{"externalId": "RP", "inventoryQuantity": 4}]})
    async with broker.running_daemon(settings):
        await broker.publish(body, routing_key=C.ROUTING_UPDATE, message_id="replay-me")
        await until(lambda: _dead_count(1), what="the message to be dead-lettered")
    code, out, err = await feed_worker("replay", "list", database_url=db_url)
    assert code == 0, err
    assert re.search(r"^replay-me\tfeed\.update\t\S+\tfeed", out, re.MULTILINE)
    assert "is disabled" in out
    await pool.execute("UPDATE inventory_feeds SET enabled = true WHERE id = $1", feed_id)
    async with broker.running_daemon(settings):
        code, out, err = await feed_worker("replay", "requeue", "--message-id", "replay-me",
                                           "--no-wait", database_url=db_url)
        assert code == 0, err
        assert out.startswith("replay-me\tsent\nsent 1 (replay "), out
        async def landed() -> bool:
            return "RP" in await feeds.items(pool, feed_id)

        await until(landed, what="the replayed message to be applied")
    assert await _dead_count(0)


async def _dead_count(n: int) -> bool:
    return await broker.queue_depth(C.QUEUE_DEAD_LETTER) == n


async def test_publish_held_applies_what_the_daily_limit_held_back(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings, db_url: str,
        feed_server: FeedServer) -> None:
    url = feed_server.add("/limited.csv", b"external_id,qty\nA,1\nB,2\nC,3\nD,4\n")
    feed_id = await feeds.make_feed(pool, url)
    await pool.execute("UPDATE dropship_providers SET daily_sku_limit = 2")
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["inserted"], run["skipped"]) == (2, 2)
    await pool.execute("UPDATE dropship_providers SET daily_sku_limit = NULL")  # "next day"
    async with broker.running_daemon(settings):
        code, out, err = await feed_worker("publish", "held", "--run", str(run["id"]),
                                           database_url=db_url)
        assert code == 0, err
        assert f"published 2 held variant(s) of run {run['id']} to feed {feed_id}" in out
        got = await until(lambda: _items_if(pool, feed_id, 4), what="the held items")
    assert {k: v["inventory_quantity"] for k, v in got.items()} == {"A": 1, "B": 2, "C": 3,
                                                                    "D": 4}
    code, _, err = await feed_worker("publish", "held", "--run", "424242", database_url=db_url)
    assert code == 2
    assert "run 424242 does not exist" in err


async def _items_if(pool: asyncpg.Pool, feed_id: int, n: int) -> dict[str, Any] | None:
    got = await feeds.items(pool, feed_id)
    return got if len(got) == n else None
