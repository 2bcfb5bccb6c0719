"""Two daemons against a three-node RabbitMQ cluster of the test's own, under push and
pull load, while one node is stopped (and started again) and then the leader of the
feed-update queue: nothing confirmed is lost, no good message is dead-lettered, and
consumption pauses only for the failovers.

The daemons and the publisher are given AMQP_URL with the three nodes, each list starting
where the stops will hit: daemon A and the publisher on the follower stopped first, daemon
B on the queue's leader stopped second, so that every client fails over at least once. The
follower is started again before the leader is stopped: a quorum queue of three needs two
of its members running.

Figures: a table printed and appended to tests/scale/last-run.txt.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiormq
import asyncpg
import pytest

from tests.faults.cluster import missing_tools
from tests.scale.brokercluster import AMQP_PASSWORD, BrokerCluster
from tests.support.feedserver import FeedServer
from tests.support.services import ADMIN_DSN, dsn_for
from tests.support.traffic import (
    BIN,
    KINDS,
    Observer,
    Publisher,
    Row,
    Sent,
    Worker,
    outcome,
    take_dead_letters,
    wait_settled,
    webhook_feeds,
)
from tests.support.wait import until
from worker import broker
from worker import constants as C
from worker.failover import FailoverConnection

LAST_RUN = Path(__file__).parent / "last-run.txt"
PULL_FEEDS = 8
PULL_ROWS = 2000
PUSH_RATE_PER_S = 40.0
PULL_EVERY_S = 1.0
PHASE_S = 15.0  # load before the first stop, between the stops, after the second
RECONNECTED = b'"event":"broker.reconnected"'  # a daemon's connection moved to another node


class FailoverPublisher(Publisher):
    """The fault tests' publisher (its model of every item's last confirmed value) over the
    cluster's nodes: a message the broker did not confirm (its node went away) is sent again,
    with its message id, once the connection is on another node; those are counted."""

    def __init__(self, amqp_url: str, feeds: dict[str, int], seed: int) -> None:
        super().__init__(amqp_url, feeds, seed)
        self.resent = 0       # messages sent more than once before their confirm
        self.resends = 0      # the extra sends
        self.pulls: dict[str, bool] = {}  # pull-request message id: confirmed
        self._robust: FailoverConnection | None = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> aio_pika.abc.AbstractExchange:
        async with self._connecting:  # pushes and pulls share one connection
            if self._exchange is None:
                robust = await broker.connect(self.amqp_url, timeout_s=5)
                assert isinstance(robust, FailoverConnection)
                self._robust = robust
                self._connection = self._robust
                channel = await self._robust.channel(publisher_confirms=True)
                self._exchange = await channel.get_exchange(C.EXCHANGE, ensure=False)
            return self._exchange

    async def send(self, body: bytes, message_id: str, routing_key: str,
                   headers: dict[str, object], deadline_s: float = 90.0) -> bool:
        """Confirmed and routed (mandatory), or False at the deadline."""
        exchange = await self._connect()
        assert self._robust is not None
        deadline = time.monotonic() + deadline_s
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            message = aio_pika.Message(body, message_id=message_id,
                                       content_type="application/json",
                                       headers=dict(headers),
                                       delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            try:
                result = await exchange.publish(message, routing_key, mandatory=True,
                                                timeout=5)
            except TimeoutError:  # the node takes messages but does not confirm them
                await self._robust.leave_node()
                result = None
            except (aio_pika.exceptions.AMQPError, ConnectionError,
                    aiormq.exceptions.ChannelInvalidStateError):
                result = None  # its node went away: the connection moves to another
            if not isinstance(result, aiormq.spec.Basic.Ack):
                await asyncio.sleep(0.1)  # backoff between tries
                with contextlib.suppress(AssertionError):
                    await until(self._connected, timeout_s=30, every_s=0.05,
                                what="the publisher's connection on another node")
                continue
            if tries > 1:
                self.resent += 1
                self.resends += tries - 1
            return True
        return False

    async def publish(self, sent: Sent) -> bool:
        self.sent.append(sent)
        sent.published_at = time.time()
        sent.confirmed = await self.send(sent.body, sent.message_id, C.ROUTING_UPDATE,
                                         sent.headers)
        return bool(sent.confirmed)

    async def pull(self, feed_id: int, n: int) -> None:
        message_id = f"pull-{feed_id}-{n}"
        body = f'{{"feedId": {feed_id}}}'.encode()
        self.pulls[message_id] = await self.send(body, message_id, C.ROUTING_PULL, {})

    def failovers(self) -> int:
        return self._robust.failovers if self._robust is not None else 0

    async def _connected(self) -> bool:
        return self._robust is not None and self._robust.connected.is_set()

    async def _close(self) -> None:
        if self._robust is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._robust.close(), 5)
        self._robust = None
        self._connection = self._exchange = None


class Consumption:
    """Samples how many push messages and pull runs the database holds, every 0.2 s; the
    longest time without either growing is the longest pause in consumption."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.grew_at: list[float] = []
        self.last = (-1, -1)
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        while not self.stopping.is_set():
            row = (await self.observer.fetch(
                "SELECT (SELECT count(*) FROM processed_messages), "
                "(SELECT count(*) FROM feed_runs WHERE kind = 'pull' AND status <> 'running')"
            ))[0]
            now = (int(row[0]), int(row[1]))
            if now[0] > self.last[0] or now[1] > self.last[1]:
                self.grew_at.append(time.monotonic())
            self.last = now
            await asyncio.sleep(0.2)

    def longest_gap(self, start: float, end: float) -> tuple[float, float]:
        """The longest time without growth between start and end, and when it began."""
        times = [start, *(t for t in self.grew_at if start <= t <= end), end]
        return max((b - a, a - start) for a, b in itertools.pairwise(times))


@contextlib.asynccontextmanager
async def database(name: str) -> AsyncIterator[str]:
    """A database of the test's own on the shared Postgres, migrated; dropped at the end."""
    dsn = dsn_for(name)
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        done = await asyncio.to_thread(
            subprocess.run, [str(BIN), "migrate"], env={**os.environ, "DATABASE_URL": dsn},
            capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"feed-worker migrate failed: {done.stderr[-2000:]}"
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def make_feeds(dsn: str, server: FeedServer) -> tuple[dict[str, int], list[int]]:
    conn = await asyncpg.connect(dsn)
    try:
        provider = await conn.fetchval(
            "INSERT INTO dropship_providers (name) VALUES ('scale') RETURNING id")
        pushed = await webhook_feeds(conn, provider, "feed")
        pulled = []
        for i in range(PULL_FEEDS):
            rows = "".join(f"P{i}-{r},SKU-{r},{r % 97}\n" for r in range(PULL_ROWS))
            url = server.add(f"/feed{i}.csv", f"external_id,vendor_sku,qty\n{rows}".encode())
            pulled.append(await conn.fetchval(
                "INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type, "
                "resource_location, fetch_cleanup, automated_fetching) "
                "VALUES ($1, $2, 'ftp_csv', $3, 'disabled', 'disabled') RETURNING id",
                provider, f"pulled {i}", url))
        return pushed, pulled
    finally:
        await conn.close()


async def _queue_online(cluster: BrokerCluster, node: str) -> bool:
    leader, members = (await asyncio.to_thread(cluster.queues))[C.QUEUE_UPDATE]
    return node in members and leader != ""


async def test_two_daemons_ride_out_a_stopped_node_and_a_stopped_leader() -> None:
    problem = missing_tools() or BrokerCluster.ports_taken()
    if problem:
        pytest.fail(problem, pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="feed-worker-scale-broker-"))
    cluster = BrokerCluster(base)
    server = FeedServer()
    workers: list[Worker] = []
    publisher: FailoverPublisher | None = None
    try:
        await asyncio.to_thread(cluster.start)
        # The project's topology, declared once on the cluster: quorum queues whose
        # replicas are on all three nodes.
        connection = await broker.connect(cluster.urls([0, 1, 2]))
        await broker.declare(await connection.channel(), 5)
        await connection.close()
        queues = await asyncio.to_thread(cluster.queues)
        for name in (C.QUEUE_PULL, C.QUEUE_UPDATE, C.QUEUE_DEAD_LETTER):
            assert sorted(queues[name][1]) == sorted(n.node for n in cluster.nodes), queues
        leader = cluster.index_of(queues[C.QUEUE_UPDATE][0])
        follower = next(i for i in range(3) if i != leader)
        other = 3 - leader - follower

        await server.start()
        async with database(f"fw_scale_broker_{os.getpid()}") as dsn:
            pushed, pulled = await make_feeds(dsn, server)
            observer = Observer(dsn)
            env = {"FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32"}
            daemon_log = base / "daemons.log"
            for order in ([follower, leader, other], [leader, follower, other]):
                worker = Worker(daemon_log, dsn, cluster.urls(order), **env)
                workers.append(worker)
                await worker.start()
            publisher = FailoverPublisher(cluster.urls([follower, other, leader]), pushed, 7)
            consumption = Consumption(observer)
            sampler = asyncio.create_task(consumption.run(), name="consumption")
            publisher.start(PUSH_RATE_PER_S)

            async def pulls() -> None:
                assert publisher is not None
                n = 0
                while not publisher.stopping.is_set():
                    await publisher.pull(pulled[n % len(pulled)], n)
                    n += 1
                    await asyncio.sleep(PULL_EVERY_S)

            pull_task = asyncio.create_task(pulls(), name="pulls")
            t_start = time.monotonic()
            # The phases of the load are the test's timeline (nothing is waited for).
            await asyncio.sleep(PHASE_S)

            t_stop1 = time.monotonic()
            await asyncio.to_thread(cluster.stop, follower)
            await asyncio.sleep(PHASE_S)
            t_restart = time.monotonic()
            await asyncio.to_thread(cluster.restart, follower)
            node = cluster.nodes[follower].node
            await until(lambda: _queue_online(cluster, node), timeout_s=60,
                        what=f"{node} back among the queue's members")
            t_back = time.monotonic()

            leader_now = cluster.index_of((await asyncio.to_thread(cluster.queues))
                                          [C.QUEUE_UPDATE][0])
            t_stop2 = time.monotonic()
            await asyncio.to_thread(cluster.stop, leader_now)
            await asyncio.sleep(PHASE_S)
            publisher.stopping.set()
            await asyncio.wait_for(asyncio.gather(publisher.task or asyncio.sleep(0),
                                                  pull_task), 120)
            t_end = time.monotonic()

            live = cluster.url(cluster.live())
            await wait_settled(observer, publisher, live, timeout_s=180)

            async def runs_done() -> bool:
                ids = [m for m, ok in publisher.pulls.items() if ok]
                n = await observer.value(
                    "SELECT count(*) FROM feed_runs WHERE kind = 'pull' AND "
                    "status <> 'running' AND message_id = ANY($1::text[])", ids)
                return int(n) == len(ids)

            with contextlib.suppress(AssertionError):
                await until(runs_done, timeout_s=120, every_s=0.5, what="every pull run")
            consumption.stopping.set()
            await sampler
            dead = await take_dead_letters(live)
            rows = await outcome(observer, publisher, dead)
            total = Row()
            for r in rows.values():
                total.add(r)
            runs = await observer.fetch(
                "SELECT message_id, status FROM feed_runs WHERE kind = 'pull' AND "
                "message_id = ANY($1::text[])", list(publisher.pulls))
            statuses: dict[str, int] = {}
            for r in runs:
                statuses[r[1]] = statuses.get(r[1], 0) + 1
            confirmed_pulls = {m for m, ok in publisher.pulls.items() if ok}
            lost_pulls = len(confirmed_pulls - {r[0] for r in runs})
            dead_pulls = sum(1 for d in dead if d.message_id in publisher.pulls)

            def gap(start: float, end: float) -> str:
                seconds, began = consumption.longest_gap(start, end)
                return f"{seconds:.1f} (from +{start + began - t_start:.1f} s)"

            figures = [
                ("push messages published", total.published),
                ("push messages confirmed", total.confirmed),
                ("sent again on another node (unconfirmed)", publisher.resent),
                ("push messages applied (in the DB)", total.applied),
                ("push messages lost", total.lost),
                ("push messages applied twice", total.applied_twice),
                ("stale overwrites (" + " / ".join(KINDS) + ")",
                 " / ".join(str(rows[k].stale) for k in KINDS)),
                ("good messages dead-lettered", total.good_dead + dead_pulls),
                ("pull-requests published", len(publisher.pulls)),
                ("pull-requests confirmed", len(confirmed_pulls)),
                ("pull runs", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))),
                ("pull-requests lost", lost_pulls),
                ("longest gap without consumption, s", gap(t_start, t_end)),
                ("  after stopping a follower, s", gap(t_stop1, t_restart)),
                ("  after stopping the queue's leader, s", gap(t_stop2, t_end)),
                ("timeline, s from the load's start",
                 f"follower {cluster.nodes[follower].node} stopped +{t_stop1 - t_start:.0f}, "
                 f"started again +{t_restart - t_start:.0f} (back +{t_back - t_start:.0f}), "
                 f"leader {cluster.nodes[leader_now].node} stopped +{t_stop2 - t_start:.0f}, "
                 f"load ended +{t_end - t_start:.0f}"),
                ("failovers: daemons (log) / publisher",
                 f"{daemon_log.read_bytes().count(RECONNECTED)} / {publisher.failovers()}"),
                ("daemon starts (no restarts)", sum(w.starts for w in workers)),
            ]
            report(figures)
            await observer.close()

            assert total.published > 0
            assert len(confirmed_pulls) > 0
            assert total.lost == 0, rows
            assert lost_pulls == 0
            assert total.good_dead + dead_pulls == 0, [d.headers for d in dead][:3]
            # Updates with an order time are never applied out of order; those without one
            # are ordered by when a daemon first received them, which a redelivery after a
            # failover changes (README, The ordering contract): counted, not asserted.
            assert rows[KINDS[0]].stale == rows[KINDS[1]].stale == 0
            assert total.applied >= total.confirmed
            assert AMQP_PASSWORD.encode() not in daemon_log.read_bytes()  # every URL masked
            assert all(w.proc is not None and w.proc.returncode is None for w in workers), \
                "a daemon died"
            for w in workers:
                assert await w.terminate() == 0
    finally:
        if publisher is not None:
            publisher.stopping.set()
            if publisher.task is not None:
                publisher.task.cancel()
                await asyncio.gather(publisher.task, return_exceptions=True)
            await publisher._close()
        for w in workers:
            await w.close()
        await server.stop()
        await asyncio.to_thread(cluster.destroy)
        if not os.environ.get("FEED_WORKER_SCALE_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def report(figures: list[tuple[str, object]]) -> None:
    width = max(len(name) for name, _ in figures)
    title = (f"broker cluster (3 RabbitMQ nodes, 2 daemons), "
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    lines = [title, *(f"  {name.ljust(width)}  {value}" for name, value in figures)]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with LAST_RUN.open("a") as out:
        out.write(text + "\n")
