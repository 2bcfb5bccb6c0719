"""Push latency benchmark: `feed-worker run` taking single-variant feed-update messages at
steady rates, how long each takes from its publish to its commit, and how many a second the
daemon can apply at most.

Run from the repository root: `.venv/bin/python -m tests.bench.push_latency [--quick]`.
Not a pass/fail test: it prints latencies, rates and the targets. It exits 1 when a message
was lost, dead-lettered or not applied, or the daemon failed; 2 when the benchmark could not
be set up.

A database of its own (dropped and created), one webhook feed whose items are seeded first:
every single-variant message updates one existing item (a new quantity). The publisher is a
child process writing AMQP frames encoded beforehand (tests/bench/rawamqp.py: a few percent
of a core at 15,000 messages/s, where aio-pika needs a whole one), persistent, with publisher
confirms, a unique message_id and a timestamp_in_ms header each.

  steady   for each rate, `--seconds` of messages on a fixed schedule (open loop: the
           schedule is kept whatever the latency); latency = the message's send time ->
           the commit of the transaction that applied it. The commit is seen through
           LISTEN: a statement trigger on processed_messages (added to the benchmark's
           database, one pg_notify per transaction) names the message ids a transaction
           remembered, which Postgres delivers when, and only if, it commits. `upd` is the
           latency to the item's updated_at (the transaction's start: a lower bound).
           sustained = messages / (first send -> last commit); kept up = it is at least
           0.95 of the rate the publisher achieved.
  drain    a backlog of single-variant messages preloaded while the daemon is stopped, then
           the daemon started on it: messages/s from its basic.consume to its last commit
           (the maximum sustained single-variant rate)
  R1       the floor: the same kind of backlog taken by a bare aio-pika consumer in the
           benchmark's process (the daemon's prefetch, an ack with `multiple` every eighth of
           it), nothing else done: what the client library alone allows on this machine,
           with its CPU time per message
  D50      the same with 50-variant messages (half updates, half new items): the reference
           throughput of the same build

The daemon runs with its default settings (plus `--set`), logs at warning level, HTTP off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from tests.bench import amqp, db, procstat, pushgen
from tests.bench.amqp import SetupError
from tests.bench.children import run_child_async
from tests.bench.latency import (
    TARGET_RATE,
    Drain,
    Step,
    busy_share,
    machine_ticks,
    percentile,
    render,
)
from tests.bench.pacer import Pacer, Plan, Sent
from tests.bench.pull_csv import feed_worker_binary, say
from tests.bench.rawamqp import PublishError
from tests.bench.services import (
    Child,
    StartError,
    child_env,
    create_vhost,
    delete_vhost,
    with_vhost,
)
from tests.support.wait import poll
from worker import constants as C
from worker.gcpause import gc_paused
from worker.settings import Settings

DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/postgres"
RATES = (200, 2_000, 5_000, 7_500, 15_000)
QUICK_RATES = (200, 2_000, 7_500)
POLL_S = 0.02
SETTLE_S = 1.0             # quiet time between two steps
START_DEADLINE_S = 30.0
SEED_CHUNK_LINES = 20_000
RAW_MAX_MESSAGES = 50_000
NOTIFY_CHANNEL = "bench_applied"

# One notification per 500 ids: a payload must stay under 8,000 bytes.
NOTIFY_TRIGGER = f"""
CREATE FUNCTION bench_applied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', string_agg(message_id, ','))
    FROM (SELECT message_id, (row_number() OVER ()) / 500 AS chunk FROM applied) s
    GROUP BY chunk;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_applied AFTER INSERT ON processed_messages
REFERENCING NEW TABLE AS applied FOR EACH STATEMENT EXECUTE FUNCTION bench_applied();
"""
CREATE_FEED = """
INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type)
VALUES ($1, 'push latency bench', 'webhook') RETURNING id
"""
SEED_COLUMNS = ["inventory_feed_id", "external_id", "vendor_sku", "name", "inventory_quantity",
                "inventory_policy", "retail_price", "inventory_updated_at"]
UPDATED_AT = """
SELECT external_id, extract(epoch FROM updated_at)::float8 AS at, inventory_quantity
FROM inventory_feed_variants WHERE inventory_feed_id = $1 AND external_id = ANY($2::text[])
"""
OUR_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
PUSH_RUNS = """
SELECT coalesce(sum((details ->> 'batches')::int), 0)::bigint AS batches,
       coalesce(sum((details ->> 'messages')::int), 0)::bigint AS messages
FROM feed_runs WHERE kind = 'push' AND inventory_feed_id = $1
"""


@dataclass(frozen=True)
class Options:
    rates: tuple[int, ...]
    seconds: float
    backlog: int
    reference_messages: int
    db_name: str
    vhost: str
    workdir: Path
    worker_env: dict[str, str]
    timeout_s: float
    quick: bool


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.push_latency",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--quick", action="store_true",
        help=f"smoke run: rates {', '.join(map(str, QUICK_RATES))} for 2 s, smaller backlogs")
    add("--rates", help=f"messages/s, comma-separated (default {','.join(map(str, RATES))}; "
        "empty: none)")
    add("--seconds", type=float, help="seconds of each steady rate (default 8)")
    add("--backlog", type=int, help="single-variant messages of the drain (default 150000)")
    add("--reference-messages", type=int,
        help="50-variant messages of the reference drain (default 2000)")
    add("--db-name", default="feed_worker_push_latency_bench",
        help="dropped and created at the start")
    add("--vhost", default="feed_worker_push_latency_bench",
        help="a RabbitMQ vhost of the run's own, made and deleted by it (with rabbitmqctl); "
        "'' for AMQP_URL's own, whose inventory.feed-update queue is then declared anew")
    add("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "feed-worker-bench")
    add("--set", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment of the daemon, e.g. FEED_WORKER_PUSH_PREFETCH=2000")
    add("--timeout", type=float, default=240.0, help="seconds a step may take to be applied")
    args = parser.parse_args(argv)
    worker_env: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set takes NAME=VALUE, not {item!r}")
        worker_env[name] = value
    rates = (tuple(int(r) for r in args.rates.split(",") if r.strip()) if args.rates is not None
             else QUICK_RATES if args.quick else RATES)
    if any(r < 1 for r in rates):
        parser.error("--rates must be positive")
    return Options(
        rates=rates,
        seconds=args.seconds or (2.0 if args.quick else 8.0),
        backlog=args.backlog if args.backlog is not None else 20_000 if args.quick else 150_000,
        reference_messages=(args.reference_messages if args.reference_messages is not None
                            else 200 if args.quick else 2_000),
        db_name=args.db_name, vhost=args.vhost, workdir=args.workdir, worker_env=worker_env,
        timeout_s=args.timeout, quick=args.quick)


# -- the messages -------------------------------------------------------------------------------

def external_id(k: int) -> str:
    return f"P{k:07d}"


def quantity(k: int, step: int) -> int:
    """Item k's quantity after `step` (0: as seeded): every step changes it."""
    return (k + 97 * step) % 1000


def single_body(feed_id: int, k: int, step: int) -> bytes:
    return orjson.dumps({"feedId": feed_id, "variants": [{
        "externalId": external_id(k), "vendorSku": f"SKU-{k:07d}", "name": f"Item {k}",
        "inventoryQuantity": quantity(k, step), "retailPrice": f"{(k % 9000 + 100) / 100:.2f}",
        "inventoryPolicy": "track"}]})


def seed_lines(feed_id: int, items: int) -> Iterator[str]:
    for k in range(items):
        yield (f"{feed_id}\t{external_id(k)}\tSKU-{k:07d}\tItem {k}\t{quantity(k, 0)}\ttrack\t"
               f"{(k % 9000 + 100) / 100:.2f}\t{pushgen.SEED_UPDATED_AT}\n")


class Commits:
    """The benchmark's LISTEN connection: when each message id's transaction committed.
    Ids are `<phase>.<n>`; the callback only keeps the payload, so that the loop is free
    to take the next notification at once."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, str]] = []
        self.at: dict[str, float] = {}
        self.phases: Counter[str] = Counter()

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.pending.append((time.time(), str(payload)))

    def count(self, phase: str) -> int:
        """The messages of `phase` committed so far."""
        pending, self.pending = self.pending, []
        for t, payload in pending:
            for mid in payload.split(","):
                if mid not in self.at:
                    self.at[mid] = t
                    self.phases[mid.partition(".")[0]] += 1
        return self.phases[phase]


@dataclass
class Bench:
    opts: Options
    feed_worker: str
    url: str
    amqp_url: str
    pg: asyncpg.Connection
    mq: Any
    pacer: Pacer
    commits: Commits
    feed_id: int
    steps: list[Step] = field(default_factory=list)
    drains: list[Drain] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backends: dict[int, str] = field(default_factory=dict)
    daemon: Child | None = None
    starts: int = 0

    @property
    def logs(self) -> Path:
        return self.opts.workdir / "logs"

    # -- the daemon -----------------------------------------------------------------------------

    async def start_daemon(self) -> Child:
        self.starts += 1
        env = child_env(self.url, self.amqp_url, **self.opts.worker_env)
        daemon = await Child.start("daemon", [self.feed_worker, "run"], env,
                                   self.logs / f"push-latency-daemon-{self.starts}.log")
        self.daemon = daemon

        async def consuming() -> bool:
            if daemon.proc.returncode is not None:
                raise StartError(f"the daemon exited {daemon.proc.returncode}: {daemon.tail()}")
            return bool((await self.queue(C.QUEUE_UPDATE)).consumers)

        if await poll(consuming, timeout_s=START_DEADLINE_S, every_s=POLL_S) is None:
            raise StartError(f"the daemon does not consume after {START_DEADLINE_S:g} s")
        return daemon

    async def stop_daemon(self) -> None:
        if self.daemon is None:
            return
        daemon, self.daemon = self.daemon, None
        code = await daemon.stop()
        if code != 0:
            self.problems.append(f"the daemon exited {code} (log {daemon.log})")

    async def queue(self, name: str) -> amqp.QueueState:
        channel = await self.mq.channel()
        try:
            return await amqp.queue_state(channel, name)
        finally:
            await channel.close()

    async def snapshot(self) -> procstat.Snapshot:
        """CPU times so far; the Postgres backends of the benchmark's database apart from the
        others (the machine may be shared)."""
        for pid in await self.pg.fetch(OUR_BACKENDS):
            self.backends[pid["pid"]] = "postgres-ours"
        ours = {os.getpid(): "bench", self.pacer.pid: "publisher", **self.backends}
        if self.daemon is not None:
            ours[self.daemon.proc.pid] = "feed-worker"
        return procstat.snapshot(ours)

    async def groups(self) -> tuple[int, int]:
        row = await self.pg.fetchrow(PUSH_RUNS, self.feed_id)
        assert row is not None
        return row["batches"], row["messages"]

    async def publish(self, plan: Plan) -> Sent:
        sent = await self.pacer.publish(plan)
        if sent.error or sent.confirmed != len(plan.ids) or sent.nacked:
            raise SetupError(f"the broker confirmed {sent.confirmed} of {len(plan.ids)} "
                             f"messages, nacked {sent.nacked}: {sent.error or 'no error'}")
        return sent

    async def wait_applied(self, ids: Sequence[str], deadline_s: float) -> int:
        """How many of `ids` (all of one phase) were committed, once all or at the deadline."""
        phase = ids[0].partition(".")[0]

        async def over() -> bool:
            if self.daemon is not None and self.daemon.proc.returncode is not None:
                self.problems.append(f"the daemon stopped by itself: {self.daemon.tail()}")
                return True
            return self.commits.count(phase) >= len(ids)

        await poll(over, timeout_s=deadline_s, every_s=POLL_S)
        return self.commits.count(phase)

    # -- steady rates ---------------------------------------------------------------------------

    async def steady(self, number: int, rate: int) -> Step:
        n = max(1, int(rate * self.opts.seconds))
        say(f"steady {rate:,} msg/s: {n:,} messages ...")
        ids = [f"{number}.{i:x}" for i in range(n)]
        plan = Plan(ids, [single_body(self.feed_id, k, number) for k in range(n)], rate)
        step = Step(rate, sent=n)
        groups_before = await self.groups()
        before, ticks = await self.snapshot(), machine_ticks()
        wall = time.monotonic()
        sent = await self.publish(plan)
        step.applied = await self.wait_applied(ids, self.opts.timeout_s)
        step.seconds = time.monotonic() - wall
        step.busy = busy_share(ticks, machine_ticks())
        step.cpu = procstat.used(before, await self.snapshot())
        groups_after = await self.groups()
        lag = sent.lag(rate)
        step.lag_p99_ms = percentile(lag, 99) * 1000
        last_send = max(sent.times)
        step.achieved = n / max(last_send - sent.start_at + 1 / rate, 1e-9)
        at = self.commits.at
        step.latencies_ms = [(at[mid] - t) * 1000 for mid, t in zip(ids, sent.times, strict=True)
                             if mid in at]
        if step.latencies_ms:
            last_commit = max(at[mid] for mid in ids if mid in at)
            step.sustained = step.applied / (last_commit - sent.start_at)
        step.upd_ms = await self.updated_at(number, sent)
        batches = groups_after[0] - groups_before[0]
        step.per_group = (groups_after[1] - groups_before[1]) / batches if batches else 0.0
        if step.applied < n:
            self.problems.append(f"steady {rate}: {n - step.applied} of {n} messages not "
                                 f"applied within {self.opts.timeout_s:g} s")
        if not step.publisher_kept:
            self.notes.append(
                f"steady {rate}: the publisher did not keep the schedule (achieved "
                f"{step.achieved:,.0f}/s, lag p99 {step.lag_p99_ms:.1f} ms): this step's "
                "rate is lower than asked (latencies are from each message's send time)")
        return step

    async def raw_steady(self, number: int, rate: int) -> Step:
        """The floor of a steady rate: the same messages taken by a bare aio-pika consumer in
        this process (the daemon stopped), latency = send -> delivered to the callback."""
        n = max(1, int(rate * self.opts.seconds))
        say(f"R1 steady {rate:,} msg/s: {n:,} messages, a bare aio-pika consumer ...")
        await self.stop_daemon()
        ids = [f"{number}.{i:x}" for i in range(n)]
        plan = Plan(ids, [single_body(self.feed_id, k, number) for k in range(n)], rate)
        step = Step(rate, "R1", sent=n)
        received: dict[str | None, float] = {}
        prefetch = Settings.from_env().push_prefetch
        every = max(1, prefetch // 8)
        done = asyncio.Event()

        async def on_message(message: Any) -> None:
            received[message.message_id] = time.time()
            if len(received) % every == 0 or len(received) >= n:
                await message.ack(multiple=True)
            if len(received) >= n:
                done.set()

        channel = await self.mq.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(C.QUEUE_UPDATE, ensure=False)
        tag = await queue.consume(on_message)
        before, ticks = await self.snapshot(), machine_ticks()
        wall = time.monotonic()
        try:
            sent = await self.publish(plan)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.opts.timeout_s)
        finally:
            await queue.cancel(tag)
            await channel.close()
        step.seconds = time.monotonic() - wall
        step.busy = busy_share(ticks, machine_ticks())
        step.cpu = procstat.used(before, await self.snapshot())
        step.applied = sum(1 for mid in ids if mid in received)
        step.lag_p99_ms = percentile(sent.lag(rate), 99) * 1000
        step.achieved = n / max(max(sent.times) - sent.start_at + 1 / rate, 1e-9)
        step.latencies_ms = [(received[mid] - t) * 1000
                             for mid, t in zip(ids, sent.times, strict=True) if mid in received]
        if received:
            step.sustained = step.applied / (max(received.values()) - sent.start_at)
        if step.applied < n:
            self.problems.append(f"R1 steady {rate}: {n - step.applied} of {n} messages not "
                                 f"consumed within {self.opts.timeout_s:g} s")
        return step

    async def updated_at(self, number: int, sent: Sent) -> list[float]:
        """Each item's updated_at (its transaction's start) minus its message's send time;
        the items are checked to hold the step's quantity."""
        n = len(sent.times)
        rows = await self.pg.fetch(UPDATED_AT, self.feed_id, [external_id(k) for k in range(n)])
        got = {r["external_id"]: r for r in rows}
        out, wrong = [], 0
        for k in range(n):
            r = got.get(external_id(k))
            if r is None or r["inventory_quantity"] != quantity(k, number):
                wrong += 1
                continue
            out.append((r["at"] - sent.times[k]) * 1000)
        if wrong:
            self.problems.append(f"step {number}: {wrong} item(s) missing or without the "
                                 "step's quantity")
        return out

    # -- drains ---------------------------------------------------------------------------------

    async def drain(self, d: Drain, plan: Plan) -> None:
        say(f"{d.label}: {d.messages:,} messages of {d.variants} variant(s), preloaded ...")
        await self.stop_daemon()
        await self.publish(plan)
        state = await self.queue(C.QUEUE_UPDATE)
        if state.ready != len(plan.ids):
            raise SetupError(f"{C.QUEUE_UPDATE} holds {state.ready} messages, not "
                             f"{len(plan.ids)}")
        groups_before = await self.groups()
        await self.start_daemon()
        consuming = time.time()
        before, ticks = await self.snapshot(), machine_ticks()
        done = await self.wait_applied(plan.ids, self.opts.timeout_s)
        d.busy = busy_share(ticks, machine_ticks())
        d.cpu = procstat.used(before, await self.snapshot())
        await self.stop_daemon()
        groups_after = await self.groups()
        batches = groups_after[0] - groups_before[0]
        d.per_group = (groups_after[1] - groups_before[1]) / batches if batches else 0.0
        if done < len(plan.ids):
            self.problems.append(f"{d.label}: {len(plan.ids) - done} of {len(plan.ids)} "
                                 f"messages not applied within {self.opts.timeout_s:g} s")
            return
        d.seconds = max(self.commits.at[mid] for mid in plan.ids) - consuming

    async def raw(self, d: Drain, plan: Plan) -> None:
        """The client library's limit: consume and ack, nothing else (the daemon stopped)."""
        say(f"{d.label}: {d.messages:,} messages, a bare aio-pika consumer ...")
        await self.stop_daemon()
        await self.publish(plan)
        prefetch = Settings.from_env().push_prefetch
        every = max(1, prefetch // 8)
        channel = await self.mq.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(C.QUEUE_UPDATE, ensure=False)
        done = asyncio.Event()
        got = 0

        async def on_message(message: Any) -> None:
            nonlocal got
            got += 1
            if got % every == 0 or got == d.messages:
                await message.ack(multiple=True)
            if got >= d.messages:
                done.set()

        before, ticks = await self.snapshot(), machine_ticks()
        cpu = time.process_time()
        start = time.time()
        tag = await queue.consume(on_message)
        try:
            await asyncio.wait_for(done.wait(), self.opts.timeout_s)
            d.seconds = time.time() - start
            d.cpu_per_message_us = (time.process_time() - cpu) / d.messages * 1e6
        except TimeoutError:
            self.problems.append(f"R1: {got} of {d.messages} consumed within "
                                 f"{self.opts.timeout_s:g} s")
        d.busy = busy_share(ticks, machine_ticks())
        d.cpu = procstat.used(before, await self.snapshot())
        await queue.cancel(tag)
        await channel.close()

    async def run_all(self) -> None:
        dead_before = (await self.queue(C.QUEUE_DEAD_LETTER)).ready
        await self.start_daemon()
        for number, rate in enumerate(self.opts.rates, start=1):
            self.steps.append(await self.steady(number, rate))
            await asyncio.sleep(SETTLE_S)  # a quiet moment between two rates, not a wait
        number = len(self.opts.rates) + 1
        for rate in (r for r in self.opts.rates if r >= TARGET_RATE // 2):
            self.steps.append(await self.raw_steady(number, rate))
            number += 1
            await asyncio.sleep(SETTLE_S)
        n = self.opts.backlog
        if n:
            ids = [f"{number}.{i:x}" for i in range(n)]
            bodies = [single_body(self.feed_id, k, number) for k in range(n)]
            d = Drain("drain", "single-variant backlog", n, 1)
            await self.drain(d, Plan(ids, bodies, None))
            self.drains.append(d)
        if n:
            n = min(n, RAW_MAX_MESSAGES)
            ids = [f"{number + 1}.{i:x}" for i in range(n)]
            bodies = [single_body(self.feed_id, k, number + 1) for k in range(n)]
            d = Drain("R1", "raw aio-pika consume + ack, no db", n, 1)
            await self.raw(d, Plan(ids, bodies, None))
            self.drains.append(d)
        m = self.opts.reference_messages
        if m:
            bodies = pushgen.bodies(self.feed_id, m, 50)
            d = Drain("D50", "50-variant backlog (reference)", m, 50)
            await self.drain(d, Plan([f"r.{i:x}" for i in range(m)], bodies, None))
            self.drains.append(d)
        await self.stop_daemon()
        dead = (await self.queue(C.QUEUE_DEAD_LETTER)).ready - dead_before
        if dead:
            self.problems.append(f"{dead} message(s) dead-lettered")


# -- setting up ---------------------------------------------------------------------------------

async def seed(pg: asyncpg.Connection, feed_id: int, singles: int, reference_items: int) -> None:
    start = time.perf_counter()

    async def chunks(lines: Iterator[str]) -> AsyncIterator[bytes]:
        while chunk := "".join(itertools.islice(lines, SEED_CHUNK_LINES)):
            yield chunk.encode()

    await pg.copy_to_table("inventory_feed_variants", source=chunks(seed_lines(feed_id, singles)),
                           columns=SEED_COLUMNS)
    if reference_items:
        await pg.copy_to_table("inventory_feed_variants",
                               source=chunks(pushgen.seed_lines(feed_id, reference_items)),
                               columns=pushgen.SEED_COLUMNS)
    await db.quiesce(pg)
    rows = await pg.fetchval(db.COUNT_ROWS, feed_id)
    say(f"seeded {rows:,} items in {time.perf_counter() - start:.1f} s")


async def main(opts: Options) -> int:
    started = time.perf_counter()
    feed_worker = feed_worker_binary()
    if feed_worker is None:
        say("cannot set up the benchmark: no feed-worker in .venv/bin (pip install -e .)")
        return 2
    url = db.with_database(os.environ.get("DATABASE_URL", DEFAULT_PG_URL), opts.db_name)
    base_amqp = os.environ.get("AMQP_URL", amqp.DEFAULT_AMQP_URL)
    amqp_url = with_vhost(base_amqp, opts.vhost) if opts.vhost else base_amqp
    logs = opts.workdir / "logs"
    stack = contextlib.AsyncExitStack()
    bench: Bench | None = None
    header: list[str] = []
    try:
        async with stack:
            if opts.vhost:
                await create_vhost(opts.vhost, base_amqp.split("//")[1].split(":")[0])
                stack.push_async_callback(delete_vhost, opts.vhost)
            await db.recreate_database(url, opts.db_name)
            migrated = await run_child_async([feed_worker, "migrate"],
                                             log=logs / "push-latency-migrate.log",
                                             env={**os.environ, "DATABASE_URL": url})
            if not migrated.ok:
                raise SetupError(f"migrate failed: {migrated.tail()}")
            pg = await asyncpg.connect(url)
            stack.push_async_callback(pg.close)
            listener = await asyncpg.connect(url)
            stack.push_async_callback(listener.close)
            mq = await amqp.connect(amqp_url)
            stack.push_async_callback(mq.close)
            await amqp.fresh_topology(mq, Settings.from_env().delivery_limit)
            await pg.execute(NOTIFY_TRIGGER)
            provider = await pg.fetchval(db.CREATE_PROVIDER, "feed-worker push latency bench")
            feed_id = await pg.fetchval(CREATE_FEED, provider)
            singles = max([int(r * opts.seconds) for r in opts.rates] + [opts.backlog, 1])
            await seed(pg, feed_id, singles, opts.reference_messages * 50)
            commits = Commits()
            await listener.add_listener(NOTIFY_CHANNEL, commits.on_notify)
            pacer = Pacer(amqp_url)
            await pacer.start()
            stack.push_async_callback(pacer.stop)
            bench = Bench(opts, feed_worker, url, amqp_url, pg, mq, pacer, commits, feed_id)
            stack.push_async_callback(bench.stop_daemon)
            version = await pg.fetchval("SHOW server_version")
            header = [
                f"feed-worker push latency benchmark: single-variant messages at "
                f"{', '.join(f'{r:,}' for r in opts.rates)} msg/s for {opts.seconds:g} s each; "
                f"a drain of {opts.backlog:,}; 50-variant reference {opts.reference_messages:,}"
                f" messages",
                f"PostgreSQL {version}, database {opts.db_name}; RabbitMQ vhost "
                f"{amqp_url.rsplit('/', 1)[-1] or '/'}; {os.cpu_count()} CPUs, Python "
                f"{platform.python_version()}"
                + (f"; daemon environment {opts.worker_env}" if opts.worker_env else ""),
            ]
            say("\n".join(header))
            # The times taken here (commits seen, deliveries to R1) must not wait for the
            # collector's passes over the run's ids: none while measuring.
            gc.collect()
            gc.freeze()
            with gc_paused():
                await bench.run_all()
    except (SetupError, StartError, PublishError, OSError, asyncpg.PostgresError) as exc:
        say(f"cannot set up the benchmark: {type(exc).__name__}: {exc}")
        if bench is not None and bench.problems:
            say("\n".join(bench.problems))
        return 2
    assert bench is not None
    say(render(bench, header))
    say(f"\nbenchmark took {time.perf_counter() - started:.0f} s; logs in {logs}")
    return 1 if bench.problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
