"""The daemon end to end: pull-requests from the real RabbitMQ, runs in the real Postgres."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import jsonschema
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.support import broker, feeds
from tests.support.feedserver import FeedServer
from tests.support.services import AMQP_URL
from tests.support.wait import until
from worker import constants as C
from worker.publish import publish_pull
from worker.settings import Settings

RUN_COMPLETED_SCHEMA = orjson.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "run-completed.schema.json").read_bytes())
BODY = b"external_id,qty,name\n" + b"".join(b"K%d,%d,item\n" % (i, i) for i in range(200))



async def _runs(pool: asyncpg.Pool, feed_id: int) -> list[dict[str, object]]:
    rows = await pool.fetch("SELECT * FROM feed_runs WHERE inventory_feed_id = $1 ORDER BY id",
                            feed_id)
    return [dict(r) for r in rows]


async def _finished(pool: asyncpg.Pool, feed_id: int, count: int = 1) -> list[dict[str, object]]:
    async def check() -> list[dict[str, object]] | None:
        runs = [r for r in await _runs(pool, feed_id) if r["status"] != "running"]
        return runs if len(runs) >= count else None

    return await until(check, what=f"{count} finished run(s) of feed {feed_id}")


async def test_a_published_pull_request_lands_the_feed(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    async with broker.running_daemon(settings):
        message_id = await publish_pull(settings, feed_id)
        [run] = await _finished(pool, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["message_id"] == message_id
    assert run["inserted"] == 200
    assert len(await feeds.items(pool, feed_id)) == 200
    assert await broker.queue_depth(C.QUEUE_PULL) == 0


async def test_a_redelivered_pull_request_changes_nothing_more(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    body = orjson.dumps({"feedId": feed_id})
    async with broker.running_daemon(settings):
        await broker.publish(body, message_id="pull-once")
        await _finished(pool, feed_id)
        await broker.publish(body, message_id="pull-once")
        await until(lambda: _depth_zero(C.QUEUE_PULL), what="the duplicate to be consumed")
    runs = await _runs(pool, feed_id)
    assert [r["status"] for r in runs] == ["succeeded"]
    assert feed_server.routes["/f.csv"].requests == 1


async def _depth_zero(queue: str) -> bool:
    return await broker.queue_depth(queue) == 0


async def test_two_replicas_never_pull_one_feed_at_once(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    feed_server.add("/slow.csv", BODY, stall_after=100)
    feed_id = await feeds.make_feed(pool, feed_server.url("/slow.csv"))
    a = replace(settings, worker_id="replica-a")
    b = replace(settings, worker_id="replica-b")
    async with broker.running_daemon(a), broker.running_daemon(b):
        await publish_pull(settings, feed_id)
        await publish_pull(settings, feed_id)

        async def both_decided() -> bool:
            runs = await _runs(pool, feed_id)
            return len(runs) == 2 and {r["status"] for r in runs} == {"running", "skipped"}

        await until(both_decided, what="one running and one skipped run")
        feed_server.routes["/slow.csv"].released.set()
        await _finished(pool, feed_id, 2)
    runs = await _runs(pool, feed_id)
    assert sorted(str(r["status"]) for r in runs) == ["skipped", "succeeded"]
    skipped = next(r for r in runs if r["status"] == "skipped")
    assert "already running" in str(skipped["error"])
    assert feed_server.routes["/slow.csv"].requests == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b'{"force": true}', "lacks feedId"),
        (b'{"feedId": "12"}', "feedId must be a positive integer"),
        (b'{"feedId": 999999}', "feed 999999 does not exist"),
    ],
)
async def test_bad_messages_are_dead_lettered_with_the_reason(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer, body: bytes, reason: str) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    async with broker.running_daemon(settings):
        message_id = f"bad-{uuid.uuid4().hex[:8]}"
        await broker.publish(body, message_id=message_id)
        dead = await until(broker.dead_letters, what="the dead-lettered message")
        # The daemon keeps running: the next good message is served.
        await publish_pull(settings, feed_id)
        [run] = await _finished(pool, feed_id)
    assert len(dead) == 1
    assert dead[0].message_id == message_id
    assert dead[0].body == body
    headers = dead[0].headers or {}
    assert reason in str(headers[C.HEADER_ERROR])
    assert headers[C.HEADER_ORIGINAL_ROUTING_KEY] == C.ROUTING_PULL
    assert headers[C.HEADER_ORIGINAL_QUEUE] == C.QUEUE_PULL
    assert run["status"] == "succeeded"


async def test_a_disabled_feed_is_dead_lettered(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY), enabled=False)
    async with broker.running_daemon(settings):
        await publish_pull(settings, feed_id)
        dead = await until(broker.dead_letters, what="the dead-lettered message")
    assert f"feed {feed_id} is disabled" in str((dead[0].headers or {})[C.HEADER_ERROR])
    assert await _runs(pool, feed_id) == []


async def test_health_ready_and_metrics(clean_broker: None, pool: asyncpg.Pool,
                                        settings: Settings, feed_server: FeedServer) -> None:
    port = _free_port()
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    labels = {"kind": "pull", "status": "succeeded"}
    before = REGISTRY.get_sample_value("feed_worker_runs_total", labels) or 0.0
    async with broker.running_daemon(replace(settings, http_host="127.0.0.1", http_port=port)), \
            aiohttp.ClientSession() as http:
        await publish_pull(settings, feed_id)
        await _finished(pool, feed_id)
        base = f"http://127.0.0.1:{port}"
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200
            assert (await r.json())["ready"] is True
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
        assert f'feed_worker_runs_total{{kind="pull",status="succeeded"}} {before + 1}' in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def run_completed_events(settings: Settings
                               ) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """A running daemon, and a function that waits for its next feed.run-completed event
    (checked against the schema)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, broker.running_daemon(settings):
        channel = await connection.channel()
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        events = await channel.declare_queue("", exclusive=True)
        await events.bind(exchange, C.ROUTING_RUN_COMPLETED)

        async def next_event() -> dict[str, Any]:
            message = await until(lambda: events.get(no_ack=True, fail=False),
                                  what="the run-completed event")
            event: dict[str, Any] = orjson.loads(message.body)
            jsonschema.Draft202012Validator(RUN_COMPLETED_SCHEMA).validate(event)
            return event

        yield next_event


async def test_a_run_completed_event_is_published(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY + b"bad,x,y,z\n"))
    async with run_completed_events(settings) as next_event:
        await publish_pull(settings, feed_id)
        event = await next_event()
    assert (event["feedId"], event["status"], event["inserted"], event["rejected"]) == \
        (feed_id, "succeeded", 200, 1)
    assert event["timings"]["total_s"] > 0


async def test_a_held_pull_is_announced_and_a_forced_one_applies(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    body = b"external_id,qty\n" + b"".join(b"E%d,5\n" % i for i in range(10))
    url = feed_server.add("/held.csv", body)
    feed_id = await feeds.make_feed(pool, url, fetch_cleanup="enabled")
    async with run_completed_events(settings) as next_event:
        got = []
        for shrink, force in ((False, False), (True, False), (True, True)):
            if shrink:
                feed_server.add("/held.csv", b"external_id,qty\nE1,5\nE2,5\n")
            await publish_pull(settings, feed_id, force)
            got.append(await next_event())
    assert [(e["status"], e["zeroed"]) for e in got] == [
        ("succeeded", 0), ("held", 8), ("succeeded", 8)]
    assert "zero 8 of the feed's 10 items" in got[1]["error"]
    assert [e["breaker"] and e["breaker"]["rule"] for e in got] == [None, "zeroed", "zeroed"]
    # The rows rule compared with the first run, as the claim read the feed's last pull.
    rows = [t for t in got[1]["breaker"].get("also", []) if t["rule"] == "rows"]
    assert [(t["last_rows_read"], t["last_run_id"]) for t in rows] == [(10, got[0]["runId"])]
    assert (got[0]["delimiter"], got[0]["encoding"]) == (",", "utf-8")
    zeroed = await pool.fetchval("SELECT count(*) FROM inventory_feed_variants "
                                 "WHERE inventory_quantity = 0 AND missing_since IS NOT NULL")
    assert zeroed == 8


async def test_a_small_feed_is_not_held_up_by_a_large_one(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    # One run at once of each size; a feed that read 100 rows or more last time is large.
    s = replace(settings, pull_concurrency=1, pull_large_rows=100)
    feed_server.add("/big.csv", BODY)
    feed_server.add("/small.csv", b"external_id,qty,name\nS1,1,item\n")
    big = await feeds.make_feed(pool, feed_server.url("/big.csv"))
    small = await feeds.make_feed(pool, feed_server.url("/small.csv"))
    async with broker.running_daemon(s):
        await publish_pull(s, big)
        await _finished(pool, big)  # 200 rows read: from now on a large feed
        feed_server.routes["/big.csv"].stall_after = 100
        await publish_pull(s, big)

        async def big_running() -> bool:
            return any(r["status"] == "running" for r in await _runs(pool, big))

        await until(big_running, what="the large feed's second pull running")
        await publish_pull(s, small)
        done = await _finished(pool, small)
        assert done[0]["status"] == "succeeded"
        assert any(r["status"] == "running" for r in await _runs(pool, big))
        feed_server.routes["/big.csv"].released.set()
        runs = await _finished(pool, big, 2)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]


def _large_body(rows: int) -> bytes:
    return b"external_id,qty,name\n" + b"".join(
        b"L%d,%d,an item of the large feed\n" % (i, i % 50) for i in range(rows))


async def _large_behind_small(pool: asyncpg.Pool, settings: Settings,
                              feed_server: FeedServer, share: float, rows: int = 150_000,
                              **large_feed: Any) -> tuple[dict[str, Any], float]:
    """A large feed (it read 100 rows or more last time) pulled while a small feed's
    download stalls, the small one let go once the large one is over: the large run, and
    how long it paused."""
    s = replace(settings, pull_large_rows=100, pull_large_share=share)
    small_body = b"external_id,qty,name\nS1,1,item\nS2,2,item\n"
    feed_server.add("/small.csv", small_body)
    large = await feeds.make_feed(pool, feed_server.url("/large.csv"), **large_feed)
    small = await feeds.make_feed(pool, feed_server.url("/small.csv"))
    # Its last pull read 200 rows: a large feed (whose items are gone since).
    await pool.execute("INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at, "
                       "finished_at, rows_read) VALUES ($1, 'pull', 'succeeded', now(), "
                       "now(), 200)", large)
    async with broker.running_daemon(s):
        feed_server.add("/large.csv", _large_body(rows))
        feed_server.routes["/small.csv"].stall_after = len(small_body) // 2
        await publish_pull(s, small)

        async def small_running() -> bool:
            return any(r["status"] == "running" for r in await _runs(pool, small))

        await until(small_running, what="the small feed's pull running")
        await publish_pull(s, large)
        [_, big] = await _finished(pool, large, 2)  # (the run inserted above first)
        assert await small_running()  # it was in flight all along
        feed_server.routes["/small.csv"].released.set()
        [done] = await _finished(pool, small)
    assert (big["status"], done["status"]) == ("succeeded", "succeeded"), big["error"]
    assert big["rows_read"] == rows
    assert await pool.fetchval(
        "SELECT count(*) FROM inventory_feed_variants WHERE inventory_feed_id = $1 "
        "AND external_id LIKE 'L%' AND inventory_quantity = substr(external_id, 2)::int % 50",
        large) == rows
    timings = big["timings"]
    timings = orjson.loads(timings) if isinstance(timings, str) else timings
    return big, timings.get("paused_s", 0.0)


@pytest.mark.parametrize("share", [0.25, 1.0])
async def test_a_large_pull_pauses_while_a_small_one_is_in_flight(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer, share: float) -> None:
    # It pauses between pieces of its file (FEED_WORKER_PULL_LARGE_SHARE) and lands whole;
    # at 1 it never pauses.
    _, paused = await _large_behind_small(pool, settings, feed_server, share)
    if share < 1:
        assert paused > 0
    else:
        assert paused == 0


async def test_a_large_pulls_pauses_do_not_count_against_its_run_deadline(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    # At a twentieth of the time, its pauses take it past its run deadline: it succeeds.
    deadline_s = 4.0
    big, paused = await _large_behind_small(pool, settings, feed_server, 0.05,
                                            run_deadline_s=deadline_s)
    timings = big["timings"]
    timings = orjson.loads(timings) if isinstance(timings, str) else timings
    assert timings["total_s"] > deadline_s
    assert timings["total_s"] - paused < deadline_s
