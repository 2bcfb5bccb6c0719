"""What ops see of a running daemon: systemd's notify socket (READY, WATCHDOG, STOPPING),
and /metrics holding every metric the alert rules and the dashboard in deploy/ read."""

from __future__ import annotations

import asyncio
import signal
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta

import aio_pika
import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import deployfiles, feeds
from tests.support.process import DaemonProcess
from tests.support.services import AMQP_URL
from tests.support.wait import until
from worker import constants as C
from worker.settings import Settings
from worker.store import gauges


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket of the test's own, under an abstract name (as systemd's may be)."""
    name = f"feed-worker-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        yield sock, "@" + name


async def _next_state(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    """Datagrams until one carries `wanted` (a line of it); every one is kept in `seen`."""
    loop = asyncio.get_running_loop()

    async def read() -> None:
        while True:
            data = (await loop.sock_recv(sock, 4096)).decode()
            seen.append(data)
            if wanted in data.splitlines():
                return

    await asyncio.wait_for(read(), 30)


async def test_systemd_hears_ready_watchdog_and_stopping(
        clean_broker: None, settings: Settings, processes: list[DaemonProcess],
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    daemon = DaemonProcess(settings.database_url, "notified", NOTIFY_SOCKET=address,
                           WATCHDOG_USEC="200000")
    processes.append(daemon)
    await daemon.start()
    seen: list[str] = []
    await _next_state(sock, "READY=1", seen)
    assert seen[0].startswith("READY=1")
    for queue in (C.QUEUE_PULL, C.QUEUE_UPDATE):  # ready: its consumers are attached
        assert await _consumers(queue) >= 1, queue
    await _next_state(sock, "WATCHDOG=1", seen)
    await _next_state(sock, "WATCHDOG=1", seen)  # pinged again: from the loop, repeatedly
    assert not any("STOPPING=1" in s for s in seen)
    daemon.signal(signal.SIGTERM)
    await _next_state(sock, "STOPPING=1", seen)
    assert await daemon.wait() == 0
    assert [e["event"] for e in daemon.events].index("daemon.stopped") > 0


async def _consumers(queue: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_hold_every_name_the_rules_and_the_dashboard_read(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        processes: list[DaemonProcess]) -> None:
    # One scheduled feed that never succeeded within twice its interval: stale.
    feed_id = await feeds.make_feed(pool, "http://127.0.0.1:9/f.csv",
                                    automated_fetching="enabled", fetch_frequency="hourly")
    await pool.execute("UPDATE inventory_feeds SET created_at = now() - interval '3 hours' "
                       "WHERE id = $1", feed_id)
    port = _free_port()
    daemon = DaemonProcess(settings.database_url, "scraped", FEED_WORKER_HTTP_PORT=str(port),
                           FEED_WORKER_HTTP_HOST="127.0.0.1", FEED_WORKER_SCHEDULER="true",
                           FEED_WORKER_METRICS_REFRESH_S="0.2")
    processes.append(daemon)
    await daemon.start()

    async def led_and_counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = await _scrape(port)
        led = samples.get(("feed_worker_scheduler_leading", ())) == 1
        stale = samples.get(("feed_worker_feeds_stale", ())) == 1
        return samples if led and stale else None

    samples = await until(led_and_counted, timeout_s=30, every_s=0.2,
                          what="the scheduler's lead and the stale feed counted")
    names = {name for name, _ in samples}
    wanted = deployfiles.metric_names(deployfiles.rule_exprs() + deployfiles.dashboard_exprs())
    assert len(wanted) >= 10
    assert wanted - names == set()
    consumers = samples[("feed_worker_queue_consumers", (("queue", C.QUEUE_PULL),))]
    assert consumers >= 1
    assert ("feed_worker_queue_messages", (("queue", C.QUEUE_DEAD_LETTER),)) in samples
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0


async def test_stale_feeds_are_counted_against_twice_their_interval(pool: asyncpg.Pool) -> None:
    async def feed(created_ago: str, *, succeeded_ago: str | None = None,
                   **columns: object) -> int:
        feed_id = await feeds.make_feed(pool, "http://127.0.0.1:9/f.csv", **columns)
        await pool.execute("UPDATE inventory_feeds SET created_at = now() - $2::interval "
                           "WHERE id = $1", feed_id, _interval(created_ago))
        if succeeded_ago is not None:
            await pool.execute(
                "INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at, "
                "finished_at) VALUES ($1, 'pull', 'succeeded', now() - $2::interval, "
                "now() - $2::interval)", feed_id, _interval(succeeded_ago))
        return feed_id

    assert await gauges.count_stale_feeds(pool) == 0
    await feed("3 hours")                                        # hourly, never succeeded
    await feed("3 days", succeeded_ago="3 hours")                # hourly, last success too old
    await feed("3 days", succeeded_ago="90 minutes")             # within twice an hour
    await feed("3 days", succeeded_ago="30 hours", fetch_frequency="daily")
    await feed("10 minutes")                                     # new: not stale yet
    await feed("3 days", automated_fetching="disabled")          # not scheduled
    await feed("3 days", enabled=False)                        # not scheduled
    assert await gauges.count_stale_feeds(pool) == 2


def _interval(text: str) -> timedelta:
    number, unit = text.split()
    return timedelta(**{unit: int(number)})
