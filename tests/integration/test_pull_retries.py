"""Pulls meeting transient failures are tried again in the worker, with backoff, a bounded
number of times; permanent ones fail at once; downloads and runs have deadlines."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import asyncpg
import orjson

from tests.support import feeds
from tests.support.feedserver import FeedServer
from tests.support.wait import until
from worker.settings import Settings

BIG = b"external_id,qty\n" + b"".join(b"K%06d,%d\n" % (i, i % 50) for i in range(60000))


def quick(settings: Settings, **kw: object) -> Settings:
    return replace(settings, retry_base_s=0.05, retry_cap_s=0.2, **kw)  # type: ignore[arg-type]


def details(run: dict[str, object]) -> dict[str, object]:
    raw = run["details"]
    return orjson.loads(raw) if isinstance(raw, str) else dict(raw)  # type: ignore[arg-type]


async def test_a_server_error_is_tried_again_after_its_retry_after(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    url = feed_server.add("/busy.csv", b"external_id,qty\nA,1\n", status=503, failures=1,
                          headers={"Retry-After": "1"})
    feed_id = await feeds.make_feed(pool, url)
    t0 = time.monotonic()
    run = await feeds.pull_once(pool, quick(settings), feed_id)
    assert run["status"] == "succeeded"
    assert run["inserted"] == 1
    assert time.monotonic() - t0 >= 1.0  # the server's Retry-After, not the 0.05 s backoff
    assert feed_server.routes["/busy.csv"].requests == 2
    [attempt] = details(run)["attempts"]  # type: ignore[misc]
    assert attempt["attempt"] == 1
    assert "HTTP 503" in attempt["error"]
    assert attempt["retry_in_s"] >= 1.0


async def test_a_permanent_failure_is_not_tried_again(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/gone.csv", status=404))
    run = await feeds.pull_once(pool, quick(settings), feed_id)
    assert run["status"] == "failed"
    assert run["error"].startswith("HTTP 404")
    assert feed_server.routes["/gone.csv"].requests == 1
    assert "attempts" not in details(run)


async def test_a_failure_that_lasts_gives_up_after_the_attempts(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/down.csv", status=502))
    run = await feeds.pull_once(pool, quick(settings, pull_retry_attempts=4), feed_id)
    assert run["status"] == "failed"
    assert run["error"].startswith("gave up after 4 attempts: ")
    assert "HTTP 502" in run["error"]
    assert feed_server.routes["/down.csv"].requests == 4
    assert [a["attempt"] for a in details(run)["attempts"]] == [1, 2, 3, 4]  # type: ignore[attr-defined]


async def copying_backend(pool: asyncpg.Pool) -> int | None:
    return await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE 'COPY%' AND state = 'active' LIMIT 1")


async def test_a_backend_terminated_mid_copy_is_retried_within_seconds(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """The run's COPY loses its backend: the worker tries the pull again at once (backoff,
    not a lease expiry) and it succeeds; the first attempt is on the run."""
    url = feed_server.add("/big.csv", BIG, chunk=16 * 1024, pace_s=0.01)
    feed_id = await feeds.make_feed(pool, url)
    pulling = asyncio.create_task(feeds.pull_once(pool, quick(settings), feed_id))
    try:
        pid = await until(lambda: copying_backend(pool), what="the pull's COPY running")
        t0 = time.monotonic()
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        run = await asyncio.wait_for(pulling, 60)
    finally:
        pulling.cancel()
    assert run["status"] == "succeeded"
    assert run["inserted"] == 60000
    assert time.monotonic() - t0 < settings.lease_s  # retried, not taken over
    [attempt] = details(run)["attempts"]  # type: ignore[misc]
    assert "terminat" in attempt["error"] or "connection" in attempt["error"].lower()
    assert run["attempts"] == 1  # the same run: no takeover


async def test_a_trickling_server_fails_the_run_below_the_minimum_rate(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    url = feed_server.add("/trickle.csv", BIG, chunk=16, pace_s=0.05)  # 320 bytes/s
    feed_id = await feeds.make_feed(pool, url)
    before = await feeds.table_state(pool)
    slow = replace(settings, min_transfer_bytes_per_s=5000, transfer_grace_s=0.5)
    t0 = time.monotonic()
    run = await feeds.pull_once(pool, slow, feed_id)
    assert run["status"] == "failed"
    assert "below FEED_WORKER_MIN_TRANSFER_BYTES_PER_S (5,000)" in run["error"]
    assert time.monotonic() - t0 < 5
    assert await feeds.table_state(pool) == before


async def test_a_feed_s_download_deadline(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    url = feed_server.add("/long.csv", BIG, chunk=32 * 1024, pace_s=0.1)
    feed_id = await feeds.make_feed(pool, url, download_deadline_s=0.5)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "the download took longer than its deadline of 0.5 s" in run["error"]
    assert await feeds.items(pool, feed_id) == {}


async def test_a_feed_s_run_deadline_bounds_its_retries(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    url = feed_server.add("/later.csv", status=503, headers={"Retry-After": "30"})
    feed_id = await feeds.make_feed(pool, url, run_deadline_s=1.0)
    t0 = time.monotonic()
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "the run took longer than its deadline of 1 s" in run["error"]
    assert time.monotonic() - t0 < 5
    assert [a["retry_in_s"] for a in details(run)["attempts"]] == [30.0]  # type: ignore[attr-defined]
