"""Push traffic for the fault and scale tests: a confirmed publisher with a model of every
item's last confirmed value, the daemon as a real process, and the outcome read back from
Postgres.

Each message sets its items' inventoryQuantity to its own sequence number, which grows
with publish order: an item's value names the message that wrote it, so a value older
than the one it replaced (a stale overwrite), a value written twice (applied twice) and a
confirmed value missing at the end (lost) can be read from the table and item history.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import orjson

from tests.support.wait import until
from worker import constants as C

# Three kinds of feed, each ordering its updates differently.
UPDATED_AT = "updatedAt"      # every variant carries inventoryUpdatedAt
TIMESTAMP_MS = "timestampMs"  # the publisher's timestamp_in_ms header only
NO_TIME = "noTime"            # neither: the worker's first receipt orders them
KINDS = (UPDATED_AT, TIMESTAMP_MS, NO_TIME)

ITEMS_PER_FEED = 200
OBSERVER = "fw-faults-observer"  # application_name of the tests' own connections
BIN = Path(sys.executable).parent / "feed-worker"


@dataclass
class Sent:
    seq: int
    kind: str
    feed_id: int
    message_id: str
    items: list[str]           # the model's items this message sets to `seq`
    good: bool = True          # bad messages (not JSON, unknown feed) are expected dead
    poison: str = ""           # what is odd about it (good or bad)
    confirmed: bool = False
    published_at: float = 0.0  # time.time() when it was sent
    body: bytes = b""
    headers: dict[str, Any] = field(default_factory=dict)


POISON_GOOD = ("nul-name", "nul-external-id", "nul-extra", "oversized-external-id",
               "all-rejected")
POISON_BAD = ("not-json", "unknown-feed")


class Publisher:
    """Publishes feed-update messages one after the other (their order is the order of
    their effects), each confirmed by the broker; reconnects when the broker goes away."""

    def __init__(self, amqp_url: str, feeds: dict[str, int], seed: int,
                 variants: tuple[int, int] = (10, 50), single_every: int = 0) -> None:
        """`feeds`: kind -> feed id, one feed per kind (KINDS, or some of them); each
        message sets `variants` (a range) of its feed's items, or one item every
        `single_every`-th message."""
        self.amqp_url = amqp_url
        self.feeds = feeds
        self.kinds = tuple(feeds)
        self.variants = variants
        self.single_every = single_every
        self.rng = random.Random(seed)
        self.sent: list[Sent] = []
        self.seq = 0
        self._last_time = datetime.now(UTC)
        self._last_ms = 0
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # -- messages -------------------------------------------------------------------
    def _variants(self, kind: str, seq: int, n: int) -> tuple[list[dict[str, Any]], list[str]]:
        ids = [f"item-{i:04d}" for i in self.rng.sample(range(ITEMS_PER_FEED), n)]
        variants: list[dict[str, Any]] = [
            {"externalId": e, "vendorSku": f"SKU-{e}", "inventoryQuantity": seq} for e in ids]
        return variants, ids

    def _order_time(self) -> datetime:
        now = datetime.now(UTC)
        self._last_time = max(now, self._last_time + timedelta(microseconds=1))
        return self._last_time

    def make(self, kind: str, poison: str = "") -> Sent:
        self.seq += 1
        seq = self.seq
        feed_id = self.feeds[kind]
        single = self.single_every and seq % self.single_every == 0
        variants, ids = self._variants(kind, seq, 1 if single else self.rng.randint(*self.variants))
        good = poison not in POISON_BAD
        if poison == "nul-name":
            variants.append({"externalId": f"poison-{seq}", "name": "bad\u0000name",
                             "inventoryQuantity": 1})
        elif poison == "nul-external-id":
            variants.append({"externalId": f"poison\u0000{seq}", "inventoryQuantity": 1})
        elif poison == "nul-extra":
            variants.append({"externalId": f"poison-{seq}", "color": "re\u0000d",
                             "inventoryQuantity": 1})
        elif poison == "oversized-external-id":
            variants.append({"externalId": f"{seq}-" + "x" * 3000, "inventoryQuantity": 1})
        elif poison == "all-rejected":
            variants = [{"externalId": f"poison-{seq}-{i}", "inventoryQuantity": "1,5"}
                        for i in range(self.rng.randint(10, 50))]
            ids = []
        elif poison == "unknown-feed":
            feed_id, ids = 9_000_000 + seq, []
        if kind == UPDATED_AT:
            at = self._order_time().isoformat(timespec="microseconds")
            for v in variants:
                v["inventoryUpdatedAt"] = at
        body = orjson.dumps({"feedId": feed_id, "variants": variants})
        if poison == "not-json":
            body, ids = b'{"feedId": %d, "variants": [{"externalId": ' % feed_id, []
        headers: dict[str, Any] = {}
        if kind == TIMESTAMP_MS:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            headers[C.HEADER_TIMESTAMP_MS] = self._last_ms
        return Sent(seq, kind, feed_id, f"m-{seq}-{uuid.uuid4().hex[:8]}", ids, good, poison,
                    body=body, headers=headers)

    # -- publishing -----------------------------------------------------------------
    async def _connect(self) -> aio_pika.abc.AbstractExchange:
        if self._exchange is not None and self._connection is not None \
                and not self._connection.is_closed:
            return self._exchange
        await self._close()
        self._connection = await aio_pika.connect(self.amqp_url, timeout=5)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(C.EXCHANGE, ensure=False)
        return self._exchange

    async def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)
        self._connection = self._exchange = None

    async def publish(self, sent: Sent) -> bool:
        """Send one message and wait for the broker's confirm; False when it is not
        confirmed (sent: it may or may not have been taken) or could not be sent (then
        it is not counted as published)."""
        try:
            exchange = await self._connect()
        except Exception:  # the broker is away: the message never left
            await self._close()
            return False
        self.sent.append(sent)
        sent.published_at = time.time()
        try:
            await exchange.publish(
                aio_pika.Message(sent.body, message_id=sent.message_id,
                                 content_type="application/json", headers=sent.headers,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=C.ROUTING_UPDATE, mandatory=True, timeout=5)
        except Exception:  # the broker is away: not confirmed, connect again next time
            await self._close()
            return False
        sent.confirmed = True
        return True

    def start(self, rate_per_s: float, poison_every: int = 0) -> None:
        self.task = asyncio.create_task(self._run(rate_per_s, poison_every), name="publisher")

    async def _run(self, rate_per_s: float, poison_every: int) -> None:
        interval = 1.0 / rate_per_s
        next_at = time.monotonic()
        n = 0
        poisons = [*POISON_GOOD, *POISON_BAD]
        while not self.stopping.is_set():
            n += 1
            kind = self.kinds[n % len(self.kinds)]
            poison = poisons[(n // poison_every) % len(poisons)] \
                if poison_every and n % poison_every == 0 else ""
            if not await self.publish(self.make(kind, poison)):
                await asyncio.sleep(0.2)  # pacing while the broker is away
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
        await self._close()

    async def discard(self) -> None:
        """A test's teardown: stop at once, whatever was still to be sent."""
        self.stopping.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self._close()

    async def publish_many(self, count: int, kinds: tuple[str, ...] | None = None) -> None:
        kinds = kinds or self.kinds
        for i in range(count):
            assert await self.publish(self.make(kinds[i % len(kinds)])), "not confirmed"

    def good(self, kind: str | None = None) -> list[Sent]:
        return [s for s in self.sent if s.good and (kind is None or s.kind == kind)]


async def webhook_feeds(conn: asyncpg.Connection, provider: int, name: str,
                        kinds: tuple[str, ...] = KINDS) -> dict[str, int]:
    """A webhook feed of `provider` for each order-time kind: kind -> feed id."""
    return {kind: await conn.fetchval(
        "INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type, "
        "fetch_cleanup) VALUES ($1, $2, 'webhook', 'disabled') RETURNING id",
        provider, f"{kind} {name}") for kind in kinds}


class Worker:
    """`feed-worker run` as a process of its own (its own process group), JSON logs
    appended to a file kept for the secrets sweep."""

    def __init__(self, log_path: Path, database_url: str, amqp_url: str, **env: str) -> None:
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "AMQP_URL": amqp_url,
            "FEED_WORKER_HTTP_PORT": "0",
            "FEED_WORKER_SCHEDULER": "false",
            "FEED_WORKER_LOG_FORMAT": "json",
            "FEED_WORKER_LOG_LEVEL": "info",
            "FEED_WORKER_WORKER_ID": f"faults-{uuid.uuid4().hex[:6]}",
            "FEED_WORKER_SHUTDOWN_GRACE_S": "15",
            "FEED_WORKER_RETRY_ATTEMPTS": "6",
            "FEED_WORKER_RETRY_BASE_S": "0.1",
            "FEED_WORKER_RETRY_CAP_S": "1.0",
            "FEED_WORKER_RETRY_JITTER": "0.3",
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    def _started_count(self) -> int:
        try:
            return self.log_path.read_bytes().count(b'"event":"daemon.started"')
        except FileNotFoundError:
            return 0

    async def start(self, timeout_s: float = 60.0) -> None:
        before = self._started_count()
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(BIN), "run", env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        self.starts += 1
        proc = self.proc

        async def started() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"feed-worker run exited {proc.returncode} on start; "
                                     f"see {self.log_path}")
            return self._started_count() > before

        await until(started, timeout_s=timeout_s, every_s=0.05, what="daemon.started")

    async def kill(self) -> None:
        """kill -9 of the daemon's process group."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 30)

    def pause(self) -> None:
        """SIGSTOP of the daemon's process group (frozen: its connections stay open)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    async def terminate(self, timeout_s: float = 40.0) -> int:
        """SIGTERM; the exit code of the graceful stop."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


class Observer:
    """The tests' own view of the scenario's database; reconnects after restarts."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: asyncpg.Connection | None = None

    async def _get(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            self.conn = await asyncpg.connect(self.dsn, timeout=5,
                                              server_settings={"application_name": OBSERVER})
        return self.conn

    async def fetch(self, sql: str, *args: Any, timeout_s: float = 60.0) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = await self._get()
                return list(await conn.fetch(sql, *args, timeout=10))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                if self.conn is not None:
                    with contextlib.suppress(Exception):
                        self.conn.terminate()
                self.conn = None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def value(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def processed_count(self) -> int:
        return int(await self.value("SELECT count(*) FROM processed_messages"))

    async def applied_since(self, t0: float) -> bool:
        return bool(await self.value(
            "SELECT EXISTS (SELECT 1 FROM processed_messages WHERE processed_at > $1)",
            datetime.fromtimestamp(t0, UTC)))

    async def recovered(self, t0: float, timeout_s: float = 90.0) -> float:
        """Seconds from the fault at t0 (time.time()) to the first group applied after it."""
        await until(lambda: self.applied_since(t0), timeout_s=timeout_s, every_s=0.05,
                    what="the first group applied after the fault")
        return time.time() - t0

    async def daemon_backends(self) -> list[Any]:
        return await self.fetch(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND application_name <> $1", OBSERVER, timeout_s=10)

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()


@dataclass
class Row:
    """One scenario's outcome for one feed kind (or all of them)."""

    published: int = 0
    confirmed: int = 0
    applied: int = 0
    lost: int = 0
    applied_twice: int = 0
    stale: int = 0
    good_dead: int = 0
    history: int = 0  # item history rows read (none: overwrites could not be seen)

    def add(self, other: Row) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


async def wait_settled(observer: Observer, publisher: Publisher, amqp_url: str,
                       timeout_s: float = 120.0, quiet_s: float = 15.0) -> None:
    """Until every confirmed good message is remembered as processed and the queue is
    empty. Returns all the same at the deadline, or once nothing more was applied for
    `quiet_s` with no message ready: what is missing then is counted as lost."""
    wanted = {s.message_id for s in publisher.sent if s.good and s.confirmed and s.items}
    last = {"count": -1, "at": time.monotonic()}

    async def done() -> bool:
        rows = await observer.fetch("SELECT message_id FROM processed_messages "
                                    "WHERE message_id = ANY($1::text[])", list(wanted))
        ready = await queue_depth(amqp_url, C.QUEUE_UPDATE)
        if len(rows) != last["count"]:
            last["count"], last["at"] = len(rows), time.monotonic()
        if ready == 0 and time.monotonic() - last["at"] > quiet_s:
            return True  # nothing moves any more
        return len(rows) == len(wanted) and ready == 0

    with contextlib.suppress(AssertionError):
        await until(done, timeout_s=timeout_s, every_s=0.5, what="all confirmed applied")


async def queue_depth(amqp_url: str, name: str) -> int:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


@dataclass
class Dead:
    message_id: str | None
    headers: dict[str, Any]
    body: bytes


async def take_dead_letters(amqp_url: str, keep: bool = False) -> list[Dead]:
    """Everything in inventory.dead-letter (taken off it, or left with `keep`)."""
    got = []
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(C.QUEUE_DEAD_LETTER, ensure=False)
        while (m := await queue.get(no_ack=not keep, fail=False, timeout=10)) is not None:
            got.append(Dead(m.message_id, dict(m.headers or {}), m.body))
        # With `keep`, closing the channel hands the unacked messages back.
    return got


async def outcome(observer: Observer, publisher: Publisher, dead: list[Dead]
                  ) -> dict[str, Row]:
    """Each kind's row, from the final table and item history (see the module's doc)."""
    finals = await observer.fetch(
        "SELECT inventory_feed_id, external_id, id, inventory_quantity "
        "FROM inventory_feed_variants")
    value = {(r[0], r[1]): r[3] for r in finals}
    chains: dict[int, list[int]] = defaultdict(list)
    for r in await observer.fetch(
            "SELECT inventory_feed_variant_id, old_quantity, new_quantity "
            "FROM variant_inventory_updates ORDER BY id"):
        chain = chains[r[0]]
        if not chain:
            chain.append(r[1])  # the value the item was created with
        chain.append(r[2])
    item_of = {r[2]: (r[0], r[1]) for r in finals}
    processed = {r[0] for r in await observer.fetch(
        "SELECT message_id FROM processed_messages WHERE message_id = ANY($1::text[])",
        [s.message_id for s in publisher.sent])}
    dead_ids = {d.message_id for d in dead}
    rows = {}
    for kind, feed_id in publisher.feeds.items():
        row = Row()
        newest: dict[str, int] = {}
        for s in publisher.good(kind):
            row.published += 1
            row.confirmed += s.confirmed
            row.applied += s.message_id in processed
            row.good_dead += s.message_id in dead_ids
            if not s.confirmed:
                continue
            if any((value.get((feed_id, e)) or 0) < s.seq for e in s.items):
                row.lost += 1
            for e in s.items:
                newest[e] = max(newest.get(e, 0), s.seq)
        row.stale += sum(1 for e, seq in newest.items() if (value.get((feed_id, e)) or 0) < seq)
        for item_id, chain in chains.items():
            if item_of.get(item_id, (None,))[0] != feed_id:
                continue
            row.history += len(chain) - 1
            row.stale += sum(1 for a, b in itertools.pairwise(chain)
                             if a is not None and b is not None and b < a)
            vals = [v for v in chain if v is not None]
            row.applied_twice += len(vals) - len(set(vals))
        rows[kind] = row
    return rows


def zero_problems(name: str, rows: dict[str, Row]) -> list[str]:
    """Lost, stale overwrites and good messages dead-lettered: 0 for every feed kind."""
    problems = []
    for kind, row in rows.items():
        if row.confirmed == 0:
            problems.append(f"{name} [{kind}]: nothing was confirmed")
        if row.history == 0:
            problems.append(f"{name} [{kind}]: no item history: overwrites cannot be seen")
        if (row.lost, row.stale, row.good_dead) != (0, 0, 0):
            problems.append(f"{name} [{kind}]: lost {row.lost}, stale overwrites {row.stale}, "
                            f"good dead-lettered {row.good_dead} (all must be 0)")
    return problems


async def dump_records(observer: Observer, dead: list[Dead], path: Path) -> None:
    """What the run left for people to read (run errors, rejects, dead letters), kept for
    the secrets sweep."""
    runs = await observer.fetch("SELECT id, error, details::text FROM feed_runs")
    rejects = await observer.fetch("SELECT run_id, position, raw, reason, message_id "
                                   "FROM feed_run_rejects")
    with path.open("ab") as out:
        for r in runs:
            out.write(orjson.dumps({"run": r[0], "error": r[1], "details": r[2]}) + b"\n")
        for r in rejects:
            out.write(orjson.dumps({"reject_run": r[0], "position": r[1], "raw": r[2],
                                    "reason": r[3], "message_id": r[4]}) + b"\n")
        for d in dead:
            out.write(orjson.dumps({"dead": d.message_id, "headers": d.headers,
                                    "body": d.body.decode(errors="replace")},
                                   default=str) + b"\n")
