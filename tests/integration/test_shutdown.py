"""SIGTERM, SIGKILL and takeover: a pull in flight is finished or handed on, never lost."""

from __future__ import annotations

import signal
from dataclasses import replace

import asyncpg

from tests.support import broker, feeds
from tests.support.feedserver import FeedServer
from tests.support.process import DaemonProcess
from tests.support.wait import until
from worker.publish import publish_pull
from worker.settings import Settings

BODY = b"external_id,qty\n" + b"".join(b"K%d,%d\n" % (i, i) for i in range(3000))




async def _run(pool: asyncpg.Pool, feed_id: int) -> dict[str, object]:
    row = await pool.fetchrow("SELECT * FROM feed_runs WHERE inventory_feed_id = $1", feed_id)
    return dict(row) if row is not None else {}


async def _start(processes: list[DaemonProcess], settings: Settings, worker_id: str,
                 **env: str) -> DaemonProcess:
    p = DaemonProcess(settings.database_url, worker_id, FEED_WORKER_LEASE_S="3", **env)
    processes.append(p)
    await p.start()
    return p


async def _stalled_run(pool: asyncpg.Pool, settings: Settings, server: FeedServer) -> int:
    server.add("/slow.csv", BODY, stall_after=5000)
    feed_id = await feeds.make_feed(pool, server.url("/slow.csv"))
    await publish_pull(settings, feed_id)
    await until(lambda: _is_running(pool, feed_id), what="the run to start")
    await server.routes["/slow.csv"].started.wait()
    return feed_id


async def _is_running(pool: asyncpg.Pool, feed_id: int) -> bool:
    return (await _run(pool, feed_id)).get("status") == "running"


async def test_sigterm_lets_the_run_in_flight_finish(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        processes: list[DaemonProcess]) -> None:
    daemon = await _start(processes, settings, "graceful", FEED_WORKER_SHUTDOWN_GRACE_S="30")
    feed_id = await _stalled_run(pool, settings, feed_server)
    daemon.signal(signal.SIGTERM)
    await daemon.wait_event("runner.draining")
    feed_server.routes["/slow.csv"].released.set()
    assert await daemon.wait() == 0
    run = await _run(pool, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 3000


async def test_sigterm_past_the_grace_period_hands_the_run_to_another_replica(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        processes: list[DaemonProcess]) -> None:
    first = await _start(processes, settings, "leaving", FEED_WORKER_SHUTDOWN_GRACE_S="0.2")
    feed_id = await _stalled_run(pool, settings, feed_server)
    first.signal(signal.SIGTERM)
    assert await first.wait() == 0
    await first.wait_event("run.handed_back")
    run = await _run(pool, feed_id)
    assert (run["status"], run["owner"]) == ("running", None)
    assert await feeds.items(pool, feed_id) == {}  # nothing half-applied
    feed_server.routes["/slow.csv"].released.set()
    async with broker.running_daemon(replace(settings, worker_id="staying")):
        async def succeeded() -> bool:
            return (await _run(pool, feed_id)).get("status") == "succeeded"

        await until(succeeded, what="the handed-back run to finish elsewhere")
    run = await _run(pool, feed_id)
    assert run["attempts"] == 2
    assert run["inserted"] == 3000


async def test_a_killed_replica_s_run_is_taken_over_when_its_lease_expires(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        processes: list[DaemonProcess]) -> None:
    doomed = await _start(processes, settings, "doomed")
    feed_id = await _stalled_run(pool, settings, feed_server)
    doomed.signal(signal.SIGKILL)
    await doomed.wait()
    feed_server.routes["/slow.csv"].released.set()
    await _start(processes, settings, "survivor")

    async def succeeded() -> bool:
        return (await _run(pool, feed_id)).get("status") == "succeeded"

    await until(succeeded, timeout_s=30, what="the survivor to take the run over")
    run = await _run(pool, feed_id)
    assert run["attempts"] == 2
    assert run["inserted"] == 3000
    assert len(await feeds.items(pool, feed_id)) == 3000
