"""Feed schedules: which feeds are due, queuing each once, and one leading replica."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from tests.support import broker as test_broker
from tests.support import feeds
from tests.support.feedserver import FeedServer
from tests.support.process import DaemonProcess
from tests.support.wait import until
from worker import broker
from worker import constants as C
from worker.scheduler import Scheduler
from worker.settings import Settings
from worker.store import schedule

BODY = b"external_id,qty\nA,1\nB,2\n"
TICK = "0.2"


# -- the due query ----------------------------------------------------------------------------

async def _feed(pool: asyncpg.Pool, url: str | None = "http://127.0.0.1:9/f.csv", *,
                scheduled_ago: timedelta | None = None, **columns: Any) -> int:
    feed_id = await feeds.make_feed(pool, url, **columns)
    if scheduled_ago is not None:
        await pool.execute(
            "UPDATE inventory_feeds SET last_scheduled_at = now() - $2::interval WHERE id = $1",
            feed_id, scheduled_ago)
    return feed_id


async def _pull_run(pool: asyncpg.Pool, feed_id: int, status: str, started_ago: timedelta,
                    kind: str = "pull") -> None:
    await pool.execute(
        "INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at) "
        "VALUES ($1, $2, $3, now() - $4::interval)", feed_id, kind, status, started_ago)


async def _claim(pool: asyncpg.Pool, *, commit: bool) -> list[schedule.Due]:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            return await schedule.claim_due(conn, 1000)
        finally:
            await (tx.commit() if commit else tx.rollback())


H = timedelta(hours=1)
MIN = timedelta(minutes=1)


async def test_which_feeds_are_due(pool: asyncpg.Pool) -> None:
    due: dict[str, int] = {
        "hourly, never scheduled": await _feed(pool),
        "hourly, scheduled 61 min ago": await _feed(pool, scheduled_ago=61 * MIN),
        "daily, scheduled 25 h ago": await _feed(pool, fetch_frequency="daily",
                                                 scheduled_ago=25 * H),
        "custom 10 min, scheduled 11 min ago": await _feed(
            pool, fetch_frequency="custom", fetch_interval=10 * MIN, scheduled_ago=11 * MIN),
        "xml feed": await _feed(pool, resource_type="xml", mapping={"record": "/r/i"}),
        "last pull (failed) 2 h ago": await _feed(pool),
        "pushed 1 min ago (a push is not a pull)": await _feed(pool),
    }
    await _pull_run(pool, due["last pull (failed) 2 h ago"], "failed", 2 * H)
    await _pull_run(pool, due["pushed 1 min ago (a push is not a pull)"], "succeeded", MIN,
                    kind="push")
    not_due: dict[str, int] = {
        "hourly, scheduled 59 min ago": await _feed(pool, scheduled_ago=59 * MIN),
        "daily, scheduled 23 h ago": await _feed(pool, fetch_frequency="daily",
                                                 scheduled_ago=23 * H),
        "custom 10 min, scheduled 9 min ago": await _feed(
            pool, fetch_frequency="custom", fetch_interval=10 * MIN, scheduled_ago=9 * MIN),
        "custom without an interval": await _feed(pool, fetch_frequency="custom"),
        "custom, zero interval": await _feed(pool, fetch_frequency="custom",
                                             fetch_interval=timedelta(0)),
        "custom, negative interval": await _feed(pool, fetch_frequency="custom",
                                                 fetch_interval=-H),
        "never": await _feed(pool, fetch_frequency="never"),
        "frequency webhook": await _feed(pool, fetch_frequency="webhook"),
        "resource type webhook": await _feed(pool, resource_type="webhook"),
        "no resource location": await _feed(pool, None),
        "disabled": await _feed(pool, enabled=False),
        "automated fetching disabled": await _feed(pool, automated_fetching="disabled"),
        "archived provider": await _feed(pool),
        "pull running": await _feed(pool, scheduled_ago=5 * H),
        "pull started 10 min ago": await _feed(pool),
        "scheduled 2 h ago, pull started 10 min ago": await _feed(pool, scheduled_ago=2 * H),
        "queued 1 min ago, not consumed yet": await _feed(pool, scheduled_ago=MIN),
    }
    await pool.execute(
        "UPDATE dropship_providers SET archived = true WHERE id = "
        "(SELECT dropship_provider_id FROM inventory_feeds WHERE id = $1)",
        not_due["archived provider"])
    await _pull_run(pool, not_due["pull running"], "running", 3 * H)
    await _pull_run(pool, not_due["pull started 10 min ago"], "succeeded", 10 * MIN)
    await _pull_run(pool, not_due["scheduled 2 h ago, pull started 10 min ago"], "skipped",
                    10 * MIN)

    claimed = {d.feed_id for d in await _claim(pool, commit=False)}
    names = {v: k for k, v in {**due, **not_due}.items()}
    assert sorted(names[i] for i in claimed) == sorted(due)
    # Rolled back: still due, and nothing was marked.
    assert {d.feed_id for d in await _claim(pool, commit=True)} == claimed
    # Committed: queued once, not again before its interval passes.
    assert await _claim(pool, commit=False) == []
    marked = await pool.fetch("SELECT id FROM inventory_feeds "
                              "WHERE last_scheduled_at > now() - interval '2 minutes'")
    assert {r["id"] for r in marked} == claimed | {not_due["queued 1 min ago, not consumed yet"]}


async def test_a_feed_that_keeps_failing_backs_off_and_says_why(pool: asyncpg.Pool) -> None:
    """After the second failed pull in a row, each failure doubles the wait (up to a day);
    a pull that did not fail ends the backoff. feed_schedule says which and why."""
    backing_off = await _feed(pool)
    for ago in (4, 3, 2):  # three failures: waits 4 h after the last one
        await pool.execute(
            "INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at, error) "
            "VALUES ($1, 'pull', 'failed', now() - $2::interval, $3)",
            backing_off, ago * H, f"HTTP 500 from the supplier ({ago} h ago)")
    twice = await _feed(pool)  # two failures: waits 2 h, the last 150 min ago: due
    for ago in (200 * MIN, 150 * MIN):
        await _pull_run(pool, twice, "failed", ago)
    recovered = await _feed(pool)  # failures, then a success 61 min ago: due again
    for ago in (5 * H, 4 * H, 3 * H):
        await _pull_run(pool, recovered, "failed", ago)
    await _pull_run(pool, recovered, "succeeded", 61 * MIN)
    daily = await _feed(pool, fetch_frequency="daily")  # 30 failures: at most a day
    for n in range(30):
        await _pull_run(pool, daily, "failed", timedelta(days=2, minutes=n))

    claimed = {d.feed_id for d in await _claim(pool, commit=False)}
    assert claimed == {twice, recovered, daily}
    state = await pool.fetchrow("SELECT * FROM feed_schedule WHERE inventory_feed_id = $1",
                                backing_off)
    assert state["state"] == "backing off"
    assert state["consecutive_failures"] == 3
    assert state["wait"] == 4 * H
    assert state["why"] == ("3 failed pulls in a row: waits 04:00:00 instead of 01:00:00; "
                            "last error: HTTP 500 from the supplier (2 h ago)")
    waits = await pool.fetch("SELECT inventory_feed_id, wait FROM feed_schedule "
                             "WHERE inventory_feed_id = ANY($1::bigint[])",
                             [twice, recovered, daily])
    assert {r["inventory_feed_id"]: r["wait"] for r in waits} == {
        twice: 2 * H, recovered: H, daily: timedelta(days=1)}


async def test_the_message_id_names_the_slot(pool: asyncpg.Pool) -> None:
    never = await _feed(pool)
    late = await _feed(pool, scheduled_ago=3 * H + 7 * MIN)
    created = await pool.fetchval("SELECT created_at FROM inventory_feeds WHERE id = $1", never)
    slot = await pool.fetchval("SELECT last_scheduled_at + interval '1 hour' "
                               "FROM inventory_feeds WHERE id = $1", late)
    first = {d.feed_id: d for d in await _claim(pool, commit=False)}
    again = {d.feed_id: d for d in await _claim(pool, commit=False)}
    assert first[never].due_at == created
    assert first[late].due_at == slot
    assert first[late].message_id == again[late].message_id  # a retry repeats the id
    assert first[late].message_id.startswith(f"schedule-{late}-")
    assert first[never].message_id != first[late].message_id


# -- one scheduler, a real broker ---------------------------------------------------------------

@pytest.fixture
async def exchange(clean_broker: None, settings: Settings) -> AsyncIterator[broker.Topology]:
    """The worker's topology on a confirmed channel, as the daemon declares it."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield await broker.declare(channel, settings.delivery_limit)


@pytest.fixture
async def schedulers(settings: Settings) -> AsyncIterator[list[Scheduler]]:
    made: list[Scheduler] = []
    yield made
    for s in made:
        await s.stop()


def _scheduler(made: list[Scheduler], settings: Settings, topology: broker.Topology,
               worker_id: str = "solo") -> Scheduler:
    s = Scheduler(replace(settings, worker_id=worker_id, schedule_tick_s=0.2), topology.exchange)
    made.append(s)
    return s


async def _queued(topology: broker.Topology) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every pull-request in the queue right now (taken off it)."""
    queue = topology.queues[C.QUEUE_PULL]
    got = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        got.append(message)
    return got


async def test_after_downtime_each_due_feed_is_queued_once(
        pool: asyncpg.Pool, settings: Settings, exchange: broker.Topology,
        schedulers: list[Scheduler]) -> None:
    down = [await _feed(pool, scheduled_ago=10 * H),
            await _feed(pool, fetch_frequency="daily", scheduled_ago=6 * 24 * H),
            await _feed(pool, fetch_frequency="custom", fetch_interval=MIN,
                        scheduled_ago=24 * H),
            await _feed(pool)]
    await _feed(pool, scheduled_ago=10 * MIN)  # not due
    s = _scheduler(schedulers, settings, exchange)
    assert await s.step() == 4
    assert s.leading
    assert await s.step() == 0  # the next ticks find nothing more
    assert await s.step() == 0
    messages = await _queued(exchange)
    bodies = [orjson.loads(m.body) for m in messages]
    assert Counter(b["feedId"] for b in bodies) == dict.fromkeys(down, 1)
    assert all(b["force"] is False for b in bodies)
    assert all(str(m.message_id).startswith(f"schedule-{b['feedId']}-")
               for m, b in zip(messages, bodies, strict=True))
    assert all(m.content_type == "application/json" for m in messages)
    stamped = await pool.fetchval(
        "SELECT count(*) FROM inventory_feeds WHERE id = ANY($1::bigint[]) "
        "AND last_scheduled_at > now() - interval '1 minute'", down)
    assert stamped == len(down)


async def test_a_publish_the_broker_returns_leaves_the_feeds_due(
        pool: asyncpg.Pool, settings: Settings, exchange: broker.Topology,
        schedulers: list[Scheduler]) -> None:
    feed_id = await _feed(pool)
    [expected] = await _claim(pool, commit=False)
    await exchange.channel.queue_delete(C.QUEUE_PULL)  # nothing bound to feed.pull
    s = _scheduler(schedulers, settings, exchange)
    assert await s.step() == 0
    assert s.leading  # a broker problem is not a database problem: it still leads
    assert await pool.fetchval(
        "SELECT last_scheduled_at FROM inventory_feeds WHERE id = $1", feed_id) is None
    exchange = await broker.declare(exchange.channel, settings.delivery_limit)
    s.exchange = exchange.exchange
    assert await s.step() == 1
    [message] = await _queued(exchange)
    assert orjson.loads(message.body)["feedId"] == feed_id
    assert message.message_id == expected.message_id  # the same slot, the same id


# -- the leader lock ----------------------------------------------------------------------------

async def _lock_holders(pool: asyncpg.Pool) -> list[str]:
    """application_name of the sessions holding the scheduler lock in this database."""
    rows = await pool.fetch(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int "
        "AND l.objid = 0 AND l.objsubid = 2 AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        C.LOCK_CLASS_SCHEDULER)
    return [r["application_name"] for r in rows]


async def test_one_scheduler_leads_and_another_takes_over_when_it_goes(
        pool: asyncpg.Pool, settings: Settings, exchange: broker.Topology,
        schedulers: list[Scheduler]) -> None:
    a = _scheduler(schedulers, settings, exchange, "replica-a")
    b = _scheduler(schedulers, settings, exchange, "replica-b")
    await a.step()
    await b.step()
    assert (a.leading, b.leading) == (True, False)
    assert await _lock_holders(pool) == ["feed-worker scheduler replica-a"]
    feed_id = await _feed(pool)
    assert await b.step() == 0  # only the leader queues
    assert await a.step() == 1
    await a.stop()
    assert not a.leading
    assert await _lock_holders(pool) == []
    await b.step()
    assert b.leading
    assert await _lock_holders(pool) == ["feed-worker scheduler replica-b"]
    assert [orjson.loads(m.body)["feedId"] for m in await _queued(exchange)] == [feed_id]


async def test_a_leader_whose_connection_breaks_stops_leading_and_retries(
        pool: asyncpg.Pool, settings: Settings, exchange: broker.Topology,
        schedulers: list[Scheduler]) -> None:
    a = _scheduler(schedulers, settings, exchange, "replica-a")
    b = _scheduler(schedulers, settings, exchange, "replica-b")
    await a.step()
    assert a.leading
    ended = await pool.fetchval(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        "WHERE application_name = 'feed-worker scheduler replica-a'")
    assert ended
    await b.step()
    assert b.leading  # the session ended, so did its lock
    await _feed(pool)
    assert await a.step() == 0  # finds its connection broken
    assert not a.leading
    assert await b.step() == 1
    await b.stop()
    await a.step()  # reconnects and leads again
    assert (a.leading, a.terms) == (True, 2)
    assert await _lock_holders(pool) == ["feed-worker scheduler replica-a"]


async def test_the_daemon_schedules_and_lets_the_lead_go_when_it_stops(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    on = replace(settings, scheduler=True, schedule_tick_s=0.2)
    async with test_broker.running_daemon(on) as daemon:
        await until(lambda: _runs_of(pool, feed_id, "succeeded"), what="the scheduled pull")
        assert daemon.scheduler is not None
        assert daemon.scheduler.leading
    assert await _lock_holders(pool) == []
    assert len(await _runs_of(pool, feed_id)) == 1
    assert len(await feeds.items(pool, feed_id)) == 2


# -- two daemon processes -----------------------------------------------------------------------

async def _runs_of(pool: asyncpg.Pool, feed_id: int, status: str | None = None) -> list[Any]:
    rows = await pool.fetch(
        "SELECT status, message_id FROM feed_runs WHERE inventory_feed_id = $1 ORDER BY id",
        feed_id)
    return [r for r in rows if status is None or r["status"] == status]


async def _start(processes: list[DaemonProcess], settings: Settings,
                 worker_id: str) -> DaemonProcess:
    p = DaemonProcess(settings.database_url, worker_id, FEED_WORKER_SCHEDULER="true",
                      FEED_WORKER_SCHEDULE_TICK_S=TICK, FEED_WORKER_LOG_LEVEL="debug")
    processes.append(p)
    await p.start()
    return p


def _count(p: DaemonProcess, event: str, since: int = 0) -> int:
    return sum(1 for e in p.events[since:] if e.get("event") == event)


async def _ticks(p: DaemonProcess, n: int) -> None:
    """Wait until the leader has looked for due feeds n more times."""
    since = len(p.events)

    async def ticked() -> bool:
        return _count(p, "scheduler.ticked", since) >= n

    await until(ticked, what=f"{n} more scheduler ticks of {p.env['FEED_WORKER_WORKER_ID']}")


async def _leader(pool: asyncpg.Pool, replicas: list[DaemonProcess]) -> DaemonProcess:
    async def one() -> list[DaemonProcess]:
        return [p for p in replicas if _count(p, "scheduler.leading")]

    [leader] = await until(one, what="a replica to lead")
    assert await _lock_holders(pool) == [
        f"feed-worker scheduler {leader.env['FEED_WORKER_WORKER_ID']}"]
    return leader


async def test_two_replicas_one_leader_and_a_takeover_after_kill(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        processes: list[DaemonProcess]) -> None:
    first_url = feed_server.add("/first.csv", BODY)
    replicas = [await _start(processes, settings, "sched-a"),
                await _start(processes, settings, "sched-b")]
    leader = await _leader(pool, replicas)
    [other] = [p for p in replicas if p is not leader]

    feed_id = await feeds.make_feed(pool, first_url)
    [run] = await until(lambda: _runs_of(pool, feed_id, "succeeded"), what="the first pull")
    assert str(run["message_id"]).startswith(f"schedule-{feed_id}-")
    await _ticks(leader, 5)
    assert len(await _runs_of(pool, feed_id)) == 1
    assert feed_server.routes["/first.csv"].requests == 1
    assert await test_broker.queue_depth(C.QUEUE_PULL) == 0
    assert _count(other, "scheduler.leading") == 0
    assert _count(other, "scheduler.ticked") == 0  # a follower never looks for due feeds

    leader.signal(signal.SIGKILL)
    await leader.wait()
    await other.wait_event("scheduler.leading")
    assert await _lock_holders(pool) == ["feed-worker scheduler " + other.env[
        "FEED_WORKER_WORKER_ID"]]
    second = await feeds.make_feed(pool, feed_server.add("/second.csv", BODY))
    await until(lambda: _runs_of(pool, second, "succeeded"), what="the pull after the takeover")
    await _ticks(other, 5)
    assert len(await _runs_of(pool, second)) == 1
    assert len(await _runs_of(pool, feed_id)) == 1  # the first feed is not due again
    assert feed_server.routes["/second.csv"].requests == 1
