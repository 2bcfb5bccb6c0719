"""A run's lease while it ends: the renewal that meets the run's own last transaction.

A pull renews its lease every lease_s / 3 on another connection. Its last transaction
locks the run row (the run must still be ours), records the outcome and commits; a
renewal made meanwhile waits for that lock, then finds the run no longer running. That is
the run's own ending, not another replica taking it over, and must not turn a succeeded
run into a "lost lease" (no event, an error exit from `feed-worker import`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.claims import claim_pull
from worker.errors import LeaseLost
from worker.lease import Lease
from worker.model import PullJob
from worker.settings import Settings

LEASE_S = 3.0       # the shortest allowed: a renewal every second
FINISH_S = 1.5      # the run's last transaction is held open longer than that

# Keeps the transaction that ends a run open, so that a renewal is sure to meet it.
SLOW_FINISH = f"""
CREATE FUNCTION slow_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep({FINISH_S});
    RETURN NEW;
END $$;
CREATE TRIGGER slow_finish BEFORE UPDATE ON feed_runs
FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')
EXECUTE FUNCTION slow_finish();
"""


async def test_a_renewal_during_the_runs_last_transaction_is_not_a_lost_lease(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    settings = replace(settings, lease_s=LEASE_S)
    settings.validate()
    await pool.execute(SLOW_FINISH)
    feed_id = await feeds.make_feed(pool)
    url = feed_server.add("/lease.csv", b"external_id,qty\nE1,5\nE2,6\n")

    # A renewal is sure to wait on the last transaction. Before renewals ended ahead of
    # it, whether that failed the run depended on which of the two tasks finished first
    # (the test below checks the ordering itself).
    run = await feeds.pull_once(pool, settings, feed_id, url)

    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["owner"]) == (2, None)


async def claimed(pool: asyncpg.Pool, settings: Settings) -> PullJob:
    feed_id = await feeds.make_feed(pool)
    claim = await claim_pull(pool, feed_id, None, settings.worker_id, settings.lease_s,
                             "http://127.0.0.1/feed.csv")
    assert claim.run_id is not None
    return PullJob(claim.run_id, claim.feed, "http://127.0.0.1/feed.csv",
                        settings.worker_id)


async def test_renewals_end_before_the_runs_last_transaction(
        pool: asyncpg.Pool, settings: Settings) -> None:
    settings = replace(settings, lease_s=LEASE_S)
    job = await claimed(pool, settings)
    lease = Lease(pool, settings, job)
    keeping = asyncio.create_task(lease.keep())
    await lease.end()
    # what the run's last transaction does: the run is no longer running
    await pool.execute("UPDATE feed_runs SET status = 'succeeded', owner = NULL "
                       "WHERE id = $1", job.run_id)
    await asyncio.wait_for(keeping, timeout=2 * LEASE_S)  # returns: no LeaseLost


async def test_a_run_taken_over_loses_its_lease(pool: asyncpg.Pool, settings: Settings) -> None:
    settings = replace(settings, lease_s=LEASE_S)
    job = await claimed(pool, settings)
    keeping = asyncio.create_task(Lease(pool, settings, job).keep())
    await pool.execute("UPDATE feed_runs SET owner = 'another-replica' WHERE id = $1",
                       job.run_id)
    with pytest.raises(LeaseLost, match="taken over"):
        await asyncio.wait_for(keeping, timeout=2 * LEASE_S)
