"""Replicas on one machine, for the scale test: `feed-worker run` daemons sharing a
database and a vhost of the test's own on the shared Postgres and RabbitMQ, pulled CSV
feeds served by a loopback HTTP server, push publishers with a model of every item's last
value (tests/support/traffic.py), what each replica holds unacked as the broker tells it,
and the figures table (printed and appended to tests/scale/last-run.txt)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aio_pika
import asyncpg
import orjson

from tests.bench import db, feedgen, procstat, pulls
from tests.support.feedserver import FeedServer
from tests.support.services import (
    RABBITMQCTL,
    admin,
    drop_vhost,
    dsn_for,
    make_vhost,
    vhost_url,
)
from tests.support.traffic import (
    BIN,
    TIMESTAMP_MS,
    UPDATED_AT,
    Observer,
    Publisher,
    Worker,
    webhook_feeds,
)
from worker import broker
from worker import constants as C
from worker.settings import Settings

LEASE_S = 5.0  # short, so that a killed replica's runs are taken over within seconds
TABLE_FILE = Path(__file__).with_name("last-run.txt")
RESET = ("TRUNCATE inventory_feed_variants, variant_inventory_updates, provider_daily_items, "
         "feed_run_rejects, feed_runs, notifications, processed_messages")


@dataclass(frozen=True)
class FeedFile:
    """A generated CSV feed (tests/bench/feedgen.py) and every item it holds, as a reader
    parses it (tests/bench/db.py)."""

    rows: int
    body: bytes
    items: dict[str, db.Item]


@dataclass(frozen=True)
class PullFeed:
    feed_id: int
    path: str  # on the feed server
    file: FeedFile


class Stage:
    """A database and a vhost of the test's own (made, then dropped at the end, also on
    failure), the feed server, the replicas and publishers started in it."""

    def __init__(self, label: str) -> None:
        self.name = f"fw_scale_{label}_{os.getpid()}"
        self.dsn = dsn_for(self.name)
        self.amqp_url = vhost_url(self.name)
        self.base = Path(tempfile.mkdtemp(prefix=f"feed-worker-{label}-"))
        self.server = FeedServer()
        self.observer = Observer(self.dsn)
        self.replicas: dict[str, Worker] = {}
        self.publishers: list[Publisher] = []
        self._pg: asyncpg.Connection | None = None
        self._provider: int | None = None

    # -- lifecycle ------------------------------------------------------------------
    async def __aenter__(self) -> Stage:
        try:
            await self._setup()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def _setup(self) -> None:
        await asyncio.to_thread(make_vhost, self.name)
        await admin(f"CREATE DATABASE {self.name}")
        env = {**os.environ, "DATABASE_URL": self.dsn}
        done = await asyncio.to_thread(subprocess.run, [str(BIN), "migrate"], env=env,
                                       capture_output=True, text=True, timeout=120,
                                       check=False)
        assert done.returncode == 0, f"feed-worker migrate failed: {done.stderr[-2000:]}"
        await self.server.start()
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        async with connection:  # the daemons' topology, for messages sent before they start
            await broker.declare(await connection.channel(), Settings().delivery_limit)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for p in self.publishers:
            await p.discard()
        for w in self.replicas.values():
            await w.close()
        await self.server.stop()
        await self.observer.close()
        if self._pg is not None:
            await self._pg.close()
        await admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        await asyncio.to_thread(drop_vhost, self.name)
        if exc is None:
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            print(f"\nreplica logs kept in {self.base}")

    async def pg(self) -> asyncpg.Connection:
        if self._pg is None:
            self._pg = await asyncpg.connect(self.dsn)
        return self._pg

    async def reset(self) -> None:
        """Items, runs and remembered messages emptied (the feeds stay)."""
        conn = await self.pg()
        await conn.execute(RESET)
        await conn.execute("CHECKPOINT")

    # -- replicas -------------------------------------------------------------------
    def replica(self, name: str, **env: str) -> Worker:
        """A daemon named `name` (its worker id, and its connection's name on the broker)."""
        w = Worker(self.base / f"{name}.log", self.dsn, f"{self.amqp_url}?name={name}",
                   FEED_WORKER_WORKER_ID=name, FEED_WORKER_LEASE_S=str(LEASE_S),
                   FEED_WORKER_ALLOWED_NETWORKS="127.0.0.1/32", **env)
        self.replicas[name] = w
        return w

    def events(self, name: str, event: str) -> list[dict[str, Any]]:
        """The replica's log events of one name."""
        found = []
        with (self.base / f"{name}.log").open("rb") as f:
            for line in f:
                if b'"event":"%s"' % event.encode() in line:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        found.append(orjson.loads(line))
        return found

    # -- pulled feeds ---------------------------------------------------------------
    def file(self, rows: int, seed: int) -> FeedFile:
        files, _ = feedgen.ensure_feed(self.base / "files", rows, seed, with_update=False,
                                       changed_share=0.0)
        # read_sample keeps every row of a file it is told has one row (a stride of 1)
        return FeedFile(rows, files.base.read_bytes(), db.read_sample(files.base, 1))

    async def pull_feeds(self, label: str, file: FeedFile, count: int,
                         chunk: int = 64 * 1024, pace_s: float = 0.0) -> list[PullFeed]:
        """`count` feeds (a provider each) serving `file`, each at its own path, sent in
        `chunk`s `pace_s` apart."""
        paths = [f"/{label}-{i}.csv" for i in range(count)]
        urls = [self.server.add(p, file.body, chunk=chunk, pace_s=pace_s) for p in paths]
        ids = await pulls.create_feeds(await self.pg(), label, urls)
        return [PullFeed(f, p, file) for f, p in zip(ids, paths, strict=True)]

    async def request_pulls(self, feeds: list[PullFeed]) -> pulls.Batch:
        """A pull-request per feed, in order, each confirmed."""
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(C.EXCHANGE, ensure=False)
            batch = pulls.Batch()
            for f in feeds:  # one at a time: the order of the queue is the list's
                one = await pulls.publish(exchange, [f.feed_id])
                batch.sent.update(one.sent)
            return batch

    async def repeat_pulls(self, batch: pulls.Batch, message_ids: list[str]) -> None:
        """The pull-requests again, with their message ids (as a redelivery brings them)."""
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(C.EXCHANGE, ensure=False)
            for message_id in message_ids:
                body = orjson.dumps({"feedId": batch.sent[message_id][0], "force": False})
                await exchange.publish(broker.json_message(body, message_id),
                                       routing_key=C.ROUTING_PULL, mandatory=True)

    async def check_items(self, feeds: list[PullFeed]) -> list[str]:
        """Each feed's items against its file: same keys, same values; the mismatches."""
        problems = []
        for f in feeds:
            check = await db.check_feed(await self.pg(), f.feed_id, f.file.rows, f.file.items)
            if not check.ok:
                problems.append(f"feed {f.feed_id}: {check.summary()}: {check.mismatches[:3]}")
        return problems

    # -- pushed feeds ---------------------------------------------------------------
    async def push_publishers(self, count: int, seed: int,
                              single_every: int = 3) -> list[Publisher]:
        """`count` publishers, each to two feeds of its own (one ordered by the variants'
        inventoryUpdatedAt, one by the timestamp_in_ms header): ordered by their sender,
        so a stale overwrite is a fault whichever replica applies what. Every
        `single_every`-th message carries one variant, the others 10 to 50."""
        conn = await self.pg()
        if self._provider is None:
            self._provider = await conn.fetchval(
                "INSERT INTO dropship_providers (name) VALUES ('pushed') RETURNING id")
        made = []
        for i in range(count):
            feeds = await webhook_feeds(conn, self._provider, f"{seed}-{i}",
                                        (UPDATED_AT, TIMESTAMP_MS))
            made.append(Publisher(self.amqp_url, feeds, seed + i, single_every=single_every))
        self.publishers.extend(made)
        return made


class Busy:
    """What a timed stretch cost in CPU: the replicas' CPU seconds per second (cores they
    kept busy, tests/bench/procstat.py) and the share of the machine's cores busy (every
    process, other work on the machine included: /proc/stat)."""

    def __init__(self, replicas: list[Worker]) -> None:
        self.pids = {r.proc.pid: "replicas" for r in replicas if r.proc is not None}
        self.started = time.monotonic()
        self.before = procstat.snapshot(self.pids)
        self.machine = _machine_ticks()

    def end(self) -> tuple[float, float]:
        """(replica cores, machine busy share 0..1) since the start."""
        wall = max(time.monotonic() - self.started, 1e-3)
        used = procstat.used(self.before, procstat.snapshot(self.pids)).get("replicas", 0.0)
        busy0, total0 = self.machine
        busy1, total1 = _machine_ticks()
        return used / wall, (busy1 - busy0) / max(total1 - total0, 1)


def _machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the machine since boot (the first line of /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


async def _rabbitmqctl_json(*args: str) -> list[dict[str, Any]]:
    done = await asyncio.to_thread(
        subprocess.run, [RABBITMQCTL, "-q", *args, "--formatter", "json"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr[-500:]}"
    rows: list[dict[str, Any]] = orjson.loads(done.stdout or "[]")
    return rows


async def held_by(vhost: str, connection_name: str) -> dict[str, int]:
    """Deliveries the named connection holds unacked, per queue it consumes from (the
    broker's view: connections, their channels, the channels' consumers)."""
    connections, channels, consumers = await asyncio.gather(
        _rabbitmqctl_json("list_connections", "pid", "vhost", "client_properties"),
        _rabbitmqctl_json("list_channels", "pid", "connection", "messages_unacknowledged"),
        _rabbitmqctl_json("list_consumers", "-p", vhost, "queue_name", "channel_pid"))
    mine = {c["pid"] for c in connections
            if c["vhost"] == vhost and _connection_name(c) == connection_name}
    unacked = {c["pid"]: int(c["messages_unacknowledged"]) for c in channels
               if c["connection"] in mine}
    held: dict[str, int] = {}
    for c in consumers:
        if c["channel_pid"] in unacked:
            held[c["queue_name"]] = held.get(c["queue_name"], 0) + unacked[c["channel_pid"]]
    return held


def _connection_name(row: dict[str, Any]) -> str | None:
    props = row.get("client_properties")
    if isinstance(props, dict):
        return props.get("connection_name")
    for item in props or []:  # older formatters: a list of [key, type, value]
        if isinstance(item, list) and item and item[0] == "connection_name":
            return str(item[-1])
    return None


def table(title: str, header: tuple[str, ...], rows: list[list[str]],
          notes: tuple[str, ...] = ()) -> str:
    """A small text table; printed, and appended to tests/scale/last-run.txt."""
    cells = [list(header), *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"{title}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"]
    for n, row in enumerate(cells):
        lines.append(" | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    text = "\n".join([*lines, *notes]) + "\n"
    print("\n" + text)
    with TABLE_FILE.open("a") as out:
        out.write(text + "\n")
    return text
