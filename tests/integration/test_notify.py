"""Notifications end to end: a real receiver on loopback checks each POST's signature; runs
in the real Postgres, the daemon on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import jsonschema
import orjson
import pytest
from prometheus_client import REGISTRY
from referencing import Registry, Resource

from tests.support import broker as test_broker
from tests.support import feeds
from tests.support.feedserver import FeedServer
from tests.support.receiver import Receiver
from tests.support.wait import until
from worker import broker
from worker.notify.notifier import Notifier
from worker.publish import publish_pull
from worker.scheduler import Scheduler
from worker.settings import Settings
from worker.store import schedule

SECRET = "hook-s3cret-a1b2c3"
MIN, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _schema(name: str) -> Any:
    return orjson.loads((SCHEMAS / name).read_bytes())


VALIDATOR = jsonschema.Draft202012Validator(
    _schema("notification.schema.json"),
    registry=Registry().with_resource(
        "https://github.com/feed-worker/feed-worker/schemas/run-completed.schema.json",
        Resource.from_contents(_schema("run-completed.schema.json"))))


def rows(n: int) -> bytes:
    return b"external_id,qty\n" + b"".join(b"K%d,%d\n" % (i, i) for i in range(n))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(SECRET)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def notifying(settings: Settings, receiver: Receiver) -> Settings:
    return replace(settings, notify_url=receiver.url, notify_secret=SECRET,
                   retry_base_s=0.05, retry_cap_s=0.2, notify_timeout_s=5.0)


@contextlib.asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[Notifier]:
    task = asyncio.create_task(notifier.run())
    try:
        yield notifier
    finally:
        await notifier.drain(10.0)
        await asyncio.wait_for(task, 10)


async def _finished(pool: asyncpg.Pool, feed_id: int, count: int) -> list[asyncpg.Record]:
    async def check() -> list[asyncpg.Record] | None:
        got = await pool.fetch("SELECT * FROM feed_runs WHERE inventory_feed_id = $1 AND "
                               "status <> 'running' ORDER BY id", feed_id)
        return got if len(got) >= count else None

    return await until(check, what=f"{count} finished run(s) of feed {feed_id}")


async def test_a_failed_a_held_and_a_rejecting_run_each_post_one_signed_notification(
        clean_broker: None, pool: asyncpg.Pool, notifying: Settings,
        feed_server: FeedServer, receiver: Receiver) -> None:
    failing = await feeds.make_feed(pool, feed_server.url("/missing.csv"))
    rejecting = await feeds.make_feed(
        pool, feed_server.add("/rejects.csv", b"external_id,qty\nA,1\nB,lots\n"))
    shrinking = await feeds.make_feed(pool, feed_server.add("/shrinks.csv", rows(100)),
                                      fetch_cleanup="enabled")
    fine = await feeds.make_feed(pool, feed_server.add("/fine.csv", rows(10)))
    async with test_broker.running_daemon(notifying):
        for feed_id in (shrinking, fine):
            await publish_pull(notifying, feed_id)
            await _finished(pool, feed_id, 1)
        feed_server.routes["/shrinks.csv"].body = rows(50)  # half the records: held
        for feed_id in (failing, rejecting, shrinking):
            await publish_pull(notifying, feed_id)
        await _finished(pool, shrinking, 2)
        await until(lambda: _count(receiver, 3), what="three notifications")
    # the daemon has drained: whatever it was to send, it sent
    got = {r.json["feedId"]: r for r in receiver.received}
    assert len(receiver.received) == 3
    assert set(got) == {failing, rejecting, shrinking}
    assert all(r.signed for r in receiver.received)
    assert {f: r.json["event"] for f, r in got.items()} == {
        failing: "run.failed", rejecting: "run.rejects", shrinking: "run.held"}
    for feed_id, r in got.items():
        VALIDATOR.validate(r.json)
        run = r.json["run"]
        stored = (await _finished(pool, feed_id, 1))[-1]
        assert (run["runId"], run["status"]) == (stored["id"], stored["status"])
        assert r.headers["X-Feed-Worker-Event"] == r.json["event"]
        assert r.headers["X-Feed-Worker-Delivery"] == f"run-{stored['id']}"
    assert got[failing].json["run"]["error"].startswith("HTTP 404")
    assert (got[rejecting].json["run"]["rowsRead"], got[rejecting].json["run"]["rejected"]) \
        == (2, 1)
    assert got[shrinking].json["run"]["breaker"]["rule"] == "zeroed"
    sent = await pool.fetch("SELECT status, attempts FROM notifications")
    assert [tuple(r) for r in sent] == [("sent", 1)] * 3


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


async def _failed_run(pool: asyncpg.Pool, settings: Settings, feed_id: int) -> int:
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed", run
    run_id: int = run["id"]
    return run_id


async def test_a_receiver_that_answers_500_gets_the_same_notification_again(
        pool: asyncpg.Pool, notifying: Settings, feed_server: FeedServer,
        receiver: Receiver) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.url("/missing.csv"))
    run_id = await _failed_run(pool, notifying, feed_id)
    receiver.answers = [500, 503]
    async with running(Notifier(pool, notifying)) as notifier:
        await notifier.after_run(run_id, "failed", 0, 0)
        await until(lambda: _count(receiver, 3), what="two tries refused and a third")
    first, second, third = receiver.received
    assert first.body == second.body == third.body
    assert all(r.signed for r in receiver.received)
    assert {r.headers["X-Feed-Worker-Delivery"] for r in receiver.received} == {f"run-{run_id}"}
    row = await pool.fetchrow("SELECT status, attempts, error FROM notifications")
    assert row is not None
    assert tuple(row) == ("sent", 3, None)


async def test_a_run_is_notified_once_whoever_hands_it_over(
        pool: asyncpg.Pool, notifying: Settings, feed_server: FeedServer,
        receiver: Receiver) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.url("/missing.csv"))
    run_id = await _failed_run(pool, notifying, feed_id)
    async with running(Notifier(pool, notifying)) as a, \
            running(Notifier(pool, replace(notifying, worker_id="other"))) as b:
        for n in (a, b, a):  # two replicas, and the same replica again
            await n.after_run(run_id, "failed", 0, 0)
    assert len(receiver.received) == 1


async def test_a_receiver_that_never_answers_well_is_given_up_and_logged_without_the_secret(
        pool: asyncpg.Pool, notifying: Settings, feed_server: FeedServer,
        receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.url("/missing.csv"))
    run_id = await _failed_run(pool, notifying, feed_id)
    receiver.answers = [500] * 10
    url = receiver.url.replace("127.0.0.1", f"user:{SECRET}@127.0.0.1")
    s = replace(notifying, notify_url=url, notify_attempts=2)
    before = _given_up()
    async with running(Notifier(pool, s)) as notifier:
        await notifier.after_run(run_id, "failed", 0, 0)
    assert _given_up() == before + 1
    row = await pool.fetchrow("SELECT status, attempts, error FROM notifications")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["error"] == "HTTP 500 (POST " + url.replace(SECRET, "***") + ")"
    out = capsys.readouterr()
    assert "notify.failed" in out.err + out.out
    assert SECRET not in out.err + out.out


def _given_up() -> float:
    return REGISTRY.get_sample_value("feed_worker_notifications_total",
                                     {"event": "run.failed", "outcome": "failed"}) or 0.0


async def test_a_feed_failing_n_times_in_a_row_is_disabled_and_no_longer_scheduled(
        pool: asyncpg.Pool, notifying: Settings, feed_server: FeedServer,
        receiver: Receiver) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.url("/missing.csv"), auto_disable_after=2)
    async with running(Notifier(pool, notifying)) as notifier:
        for _ in range(2):
            await notifier.after_run(await _failed_run(pool, notifying, feed_id), "failed", 0, 0)
        await until(lambda: _count(receiver, 2), what="two notifications")
    feed = await pool.fetchrow("SELECT * FROM inventory_feeds WHERE id = $1", feed_id)
    assert feed is not None
    assert not feed["enabled"]
    assert feed["disabled_reason"].startswith("disabled after 2 failed pulls in a row; "
                                              "last error: HTTP 404")
    # sent by concurrent senders: in either order
    first, second = sorted((r.json for r in receiver.received), key=lambda b: b["run"]["runId"])
    assert (first["feedDisabled"], second["feedDisabled"]) == (None, feed["disabled_reason"])
    # long after: the scheduler would have queued it, and does not
    await pool.execute("UPDATE feed_runs SET started_at = started_at - interval '10 days'")
    assert await _due(pool) == []
    assert await pool.fetchval("SELECT state FROM feed_schedule") == "not scheduled"
    # enabled again: the reason goes, and its failures before count no more
    await pool.execute("UPDATE inventory_feeds SET enabled = true WHERE id = $1", feed_id)
    assert await pool.fetchval("SELECT disabled_reason FROM inventory_feeds") is None
    assert [d.feed_id for d in await _due(pool)] == [feed_id]
    async with running(Notifier(pool, notifying)) as notifier:
        await notifier.after_run(await _failed_run(pool, notifying, feed_id), "failed", 0, 0)
    assert await pool.fetchval("SELECT enabled FROM inventory_feeds") is True


async def test_the_global_auto_disable_setting_and_its_off_switch(
        pool: asyncpg.Pool, notifying: Settings, feed_server: FeedServer) -> None:
    by_default = await feeds.make_feed(pool, feed_server.url("/missing.csv"))
    never = await feeds.make_feed(pool, feed_server.url("/missing.csv"), auto_disable_after=0)
    s = replace(notifying, auto_disable_after=1, notify_url="")
    async with running(Notifier(pool, s)) as notifier:
        for feed_id in (by_default, never):
            await notifier.after_run(await _failed_run(pool, s, feed_id), "failed", 0, 0)
    enabled = dict(await pool.fetch("SELECT id, enabled FROM inventory_feeds"))
    assert enabled == {by_default: False, never: True}


async def _due(pool: asyncpg.Pool) -> list[schedule.Due]:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            return await schedule.claim_due(conn, 100)
        finally:
            await tx.rollback()


# -- stale feeds, on the leading scheduler --------------------------------------------------

@pytest.fixture
async def exchange(clean_broker: None, settings: Settings) -> AsyncIterator[broker.Topology]:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield await broker.declare(channel, settings.delivery_limit)


async def _aged(pool: asyncpg.Pool, url: str, created_ago: timedelta,
                succeeded_ago: timedelta | None = None) -> int:
    feed_id = await feeds.make_feed(pool, url)
    await pool.execute("UPDATE inventory_feeds SET created_at = now() - $2::interval "
                       "WHERE id = $1", feed_id, created_ago)
    if succeeded_ago is not None:
        await pool.execute(
            "INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at, finished_at) "
            "VALUES ($1, 'pull', 'succeeded', now() - $2::interval, now() - $2::interval)",
            feed_id, succeeded_ago)
    return feed_id


async def test_a_stale_feed_is_notified_once_by_the_leading_scheduler(
        pool: asyncpg.Pool, notifying: Settings, exchange: broker.Topology,
        receiver: Receiver, feed_server: FeedServer) -> None:
    url = feed_server.url("/f.csv")
    never = await _aged(pool, url, 3 * H)
    long_ago = await _aged(pool, url, 10 * D, succeeded_ago=150 * MIN)
    await _aged(pool, url, 10 * D, succeeded_ago=90 * MIN)   # within 2 x 1 h
    await _aged(pool, url, 90 * MIN)                         # young
    off = await _aged(pool, url, 10 * D)
    await pool.execute("UPDATE inventory_feeds SET automated_fetching = 'disabled' "
                       "WHERE id = $1", off)                         # not on a schedule
    a, b = Notifier(pool, notifying), Notifier(pool, notifying)
    leader = Scheduler(replace(notifying, worker_id="a"), exchange.exchange, a.check_stale)
    other = Scheduler(replace(notifying, worker_id="b"), exchange.exchange, b.check_stale)
    try:
        async with running(a), running(b):
            for s in (leader, other, leader, other):
                await s.step()
            assert (leader.leading, other.leading) == (True, False)
            await until(lambda: _count(receiver, 2), what="two stale feeds notified")
            await leader.stop()  # the other leads, and finds them told already
            await other.step()
            assert other.leading
    finally:
        await leader.stop()
        await other.stop()
    assert sorted(r.json["feedId"] for r in receiver.received) == sorted([never, long_ago])
    assert all(r.signed and r.json["event"] == "feed.stale" for r in receiver.received)
    for r in receiver.received:
        VALIDATOR.validate(r.json)
    got = {r.json["feedId"]: r.json["stale"] for r in receiver.received}
    assert got[never] == {"lastSucceededRunId": None, "lastSucceededAt": None,
                          "everySeconds": 3600.0}
    assert got[long_ago]["lastSucceededRunId"] is not None


async def test_a_feeds_own_url_and_secret_are_used_and_judged_by_the_address_guard(
        pool: asyncpg.Pool, notifying: Settings, feed_server: FeedServer,
        receiver: Receiver) -> None:
    own = Receiver("the-feeds-own-key")
    await own.start()
    try:
        mine = await feeds.make_feed(pool, feed_server.url("/missing.csv"),
                                     notify_url=own.url, notify_secret=own.secret)
        theirs = await feeds.make_feed(pool, feed_server.url("/missing.csv"))
        async with running(Notifier(pool, notifying)) as notifier:
            await notifier.after_run(await _failed_run(pool, notifying, mine), "failed", 0, 0)
        assert (len(own.received), len(receiver.received)) == (1, 0)
        assert own.received[0].signed  # under the feed's key, not the worker's
        # Loopback no longer allowed: the feed's URL (a provider's) is refused; the
        # worker's own (the operator's) is not judged.
        guarded = replace(notifying, allowed_networks="")
        async with running(Notifier(pool, guarded)) as notifier:
            await notifier.after_run(await _failed_run(pool, notifying, mine), "failed", 0, 0)
            await notifier.after_run(await _failed_run(pool, notifying, theirs), "failed", 0, 0)
        assert (len(own.received), len(receiver.received)) == (1, 1)
        refused = await pool.fetchrow("SELECT status, error FROM notifications "
                                      "WHERE inventory_feed_id = $1 ORDER BY id DESC", mine)
        assert refused is not None
        assert refused["status"] == "failed"
        assert "127.0.0.1" in refused["error"]
        assert own.secret not in refused["error"]
    finally:
        await own.stop()


async def test_the_daemons_scheduler_notifies_a_stale_feed_and_its_failed_pull_once(
        clean_broker: None, pool: asyncpg.Pool, notifying: Settings,
        feed_server: FeedServer, receiver: Receiver) -> None:
    feed_id = await _aged(pool, feed_server.url("/missing.csv"), 3 * H)
    s = replace(notifying, scheduler=True, schedule_tick_s=0.2)
    async with test_broker.running_daemon(s):
        await until(lambda: _count(receiver, 2), what="the stale feed and its failed pull")
        await _finished(pool, feed_id, 1)
    assert sorted(r.json["event"] for r in receiver.received) == ["feed.stale", "run.failed"]
    assert all(r.signed and r.json["feedId"] == feed_id for r in receiver.received)
