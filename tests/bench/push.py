"""Push benchmark: `feed-worker run` applying preloaded feed-update messages, against the raw
limit of the client (consume + ack, no database) and a naive peer, printed as ratios.

Run from the repository root: `.venv/bin/python -m tests.bench.push [--quick]`.
Not a pass/fail test: it prints times, items/s and ratios with their targets. It exits 1
when a run lost or corrupted data, 2 when the benchmark could not be set up.

Every run starts from the same N persistent messages of V variants preloaded in the quorum
queue inventory.feed-update (published with confirms, timed for reference), and ends when
the queue is empty and every message is acked:

  R  raw aio-pika consume + ack of the messages, no database work (the limit)
  W  the real daemon, `feed-worker run`, from its start; the table is seeded first with the
     half of the items the messages update (the other half are new, interleaved)
  P  naive peer: per message, one transaction with an executemany of
     INSERT ... ON CONFLICT DO UPDATE of its variants, then ack (same seeded table)

Targets: W >= 0.5 x R and W >= 3 x P in items/s. After W and P the table must hold every
item with its final quantity (count, sum and a sample checked column by column).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aio_pika.abc import AbstractConnection

from tests.bench import amqp, db, procstat, pushgen
from tests.bench.amqp import SetupError
from tests.bench.children import run_child_async
from tests.bench.pull_csv import feed_worker_binary, say
from tests.bench.report import Measurement
from tests.bench.services import create_vhost, delete_vhost, with_vhost
from worker import constants as C
from worker.settings import Settings

RUNS = ("R", "W", "P")
DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/postgres"
POLL_S = 0.05
STOP_DEADLINE_S = 60.0
SEED_CHUNK_LINES = 20_000
PYSPY_RATE = 100
TARGETS = (
    ("W/R", "W", "R", 0.5, "worker vs raw consume + ack"),
    ("W/P", "W", "P", 3.0, "worker vs naive per-message upsert"),
)

RESET = ("TRUNCATE inventory_feed_variants, processed_messages, feed_run_rejects, feed_runs, "
         "notifications")
TABLE_TOTALS = """
SELECT count(*) AS n, coalesce(sum(inventory_quantity), 0)::bigint AS qty
FROM inventory_feed_variants WHERE inventory_feed_id = $1
"""
SAMPLE_ROWS = """
SELECT external_id, vendor_sku, barcode, name, inventory_quantity, inventory_policy,
       retail_price, compare_at_price, grams
FROM inventory_feed_variants
WHERE inventory_feed_id = $1 AND external_id = ANY($2::text[])
"""
APPLIED_MESSAGES = """
SELECT coalesce(sum((details ->> 'messages')::int), 0)::bigint
FROM feed_runs WHERE kind = 'push' AND inventory_feed_id = $1
"""
PUSH_RUNS = """
SELECT count(*) AS runs, coalesce(sum(rows_read), 0)::bigint AS rows_read,
       coalesce(sum(inserted), 0)::bigint AS inserted,
       coalesce(sum(updated), 0)::bigint AS updated,
       coalesce(sum(unchanged), 0)::bigint AS unchanged,
       coalesce(sum(rejected), 0)::bigint AS rejected,
       coalesce(sum(duplicates), 0)::bigint AS duplicates,
       coalesce(sum((details ->> 'batches')::int), 0)::bigint AS batches,
       coalesce(sum((details ->> 'messages')::int), 0)::bigint AS messages,
       coalesce(sum((details ->> 'stale')::int), 0)::bigint AS stale
FROM feed_runs WHERE kind = 'push' AND inventory_feed_id = $1
"""


@dataclass(frozen=True)
class Options:
    messages: int
    variants: int
    skip: frozenset[str]
    db_name: str
    vhost: str
    workdir: Path
    r_prefetch: int
    p_prefetch: int
    worker_env: dict[str, str]
    profile: bool
    timeout_s: float


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.push",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--messages", type=int, help="feed-update messages per run (default 20000)")
    add("--variants", type=int, default=50, help="variants per message (default 50)")
    add("--quick", action="store_true", help="smoke run: 2000 messages")
    add("--skip", default="", help=f"comma-separated runs to leave out, of {', '.join(RUNS)}")
    add("--db-name", default="feed_worker_push_bench", help="dropped and created at the start")
    add("--vhost", default="feed_worker_push_bench",
        help="a RabbitMQ vhost of the run's own, made and deleted by it (with rabbitmqctl); "
        "'' for AMQP_URL's own, whose inventory.feed-update queue is then declared anew")
    add("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "feed-worker-bench")
    add("--r-prefetch", type=int, default=100, help="prefetch of the raw consumer R")
    add("--p-prefetch", type=int, default=100, help="prefetch of the naive peer P")
    add(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the daemon in W, e.g. FEED_WORKER_PUSH_PREFETCH=800",
    )
    add(
        "--profile",
        action="store_true",
        help="sample the daemon with py-spy (if installed) once it consumes; W gets slower",
    )
    add("--timeout", type=float, default=240.0, help="seconds a run may take before it fails")
    args = parser.parse_args(argv)
    skip = frozenset(s.strip().upper() for s in args.skip.split(",") if s.strip())
    if skip - set(RUNS):
        parser.error(f"--skip takes runs of {RUNS}, not {sorted(skip - set(RUNS))}")
    worker_env: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set takes NAME=VALUE, not {item!r}")
        worker_env[name] = value
    messages = args.messages or (2_000 if args.quick else 20_000)
    if messages < 1 or args.variants < 1:
        parser.error("--messages and --variants must be at least 1")
    return Options(
        messages=messages,
        variants=args.variants,
        skip=skip,
        db_name=args.db_name,
        vhost=args.vhost,
        workdir=args.workdir,
        r_prefetch=args.r_prefetch,
        p_prefetch=args.p_prefetch,
        worker_env=worker_env,
        profile=args.profile,
        timeout_s=args.timeout,
    )


@dataclass(frozen=True)
class TableCheck:
    rows: int
    expected_rows: int
    quantity_sum: int
    expected_quantity_sum: int
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return (
            self.rows == self.expected_rows
            and self.quantity_sum == self.expected_quantity_sum
            and not self.mismatches
        )

    def summary(self) -> str:
        def verdict(good: bool) -> str:
            return "OK" if good else "MISMATCH"

        return (
            f"rows {self.rows:,} {verdict(self.rows == self.expected_rows)}, quantity sum "
            f"{verdict(self.quantity_sum == self.expected_quantity_sum)}, "
            f"sample {verdict(not self.mismatches)}"
        )


@dataclass
class Bench:
    """One benchmark: the database, the broker, the messages, and what was measured."""

    opts: Options
    url: str
    amqp_url: str
    pg: asyncpg.Connection
    mq: AbstractConnection
    feed_id: int
    bodies: list[bytes]
    feed_worker: str | None
    delivery_limit: int
    measurements: dict[str, Measurement] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    profiler: asyncio.subprocess.Process | None = None

    @property
    def items(self) -> int:
        return self.opts.messages * self.opts.variants

    @property
    def logs(self) -> Path:
        return self.opts.workdir / "logs"

    def add(self, m: Measurement) -> Measurement:
        self.measurements[m.label] = m
        return m

    def fail(self, m: Measurement, why: str) -> None:
        m.ok = False
        m.note = f"{m.note}, {why}" if m.note else why
        say(f"  {m.label}: {why}")

    # -- shared steps ---------------------------------------------------------------------------

    async def seed(self) -> None:
        """The table as every run that writes starts: the existing half of the items."""
        start = time.perf_counter()
        await self.pg.execute(RESET)
        lines = pushgen.seed_lines(self.feed_id, self.items)

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := "".join(itertools.islice(lines, SEED_CHUNK_LINES)):
                yield chunk.encode()

        await self.pg.copy_to_table(
            "inventory_feed_variants", source=chunks(), columns=pushgen.SEED_COLUMNS
        )
        await db.quiesce(self.pg)
        rows = await self.pg.fetchval(db.COUNT_ROWS, self.feed_id)
        say(f"  seeded {rows:,} existing items in {time.perf_counter() - start:.1f} s")

    async def preload(self, label: str) -> list[str]:
        """Exactly the benchmark's messages in the empty queue, with fresh message ids."""
        purged = await amqp.ensure_empty(self.mq, C.QUEUE_UPDATE)
        if purged:
            say(f"  purged {purged} message(s) left in {C.QUEUE_UPDATE}")
        published = await amqp.publish_all(self.mq, self.bodies)
        n = len(self.bodies)
        self.add(
            Measurement(
                f"pub-{label}",
                f"publish before {label}, confirmed, <={amqp.PUBLISH_IN_FLIGHT} unconfirmed",
                self.items,
                seconds=published.seconds,
                note="reference, not a target",
            )
        )
        channel = await self.mq.channel()
        try:
            state = await amqp.queue_state(channel, C.QUEUE_UPDATE)
        finally:
            await channel.close()
        if state.ready != n:
            raise SetupError(f"{C.QUEUE_UPDATE} holds {state.ready} messages, not {n}")
        say(f"  published {n:,} messages in {published.seconds:.1f} s")
        return published.message_ids

    async def queue_left(self) -> int:
        channel = await self.mq.channel()
        try:
            return (await amqp.queue_state(channel, C.QUEUE_UPDATE)).ready
        finally:
            await channel.close()

    async def dead_letters(self) -> int:
        channel = await self.mq.channel()
        try:
            return (await amqp.queue_state(channel, C.QUEUE_DEAD_LETTER)).ready
        finally:
            await channel.close()

    async def check_table(self, m: Measurement) -> None:
        totals = pushgen.totals(self.items)
        got = await self.pg.fetchrow(TABLE_TOTALS, self.feed_id)
        assert got is not None
        sample = pushgen.sample(self.items)
        rows = await self.pg.fetch(SAMPLE_ROWS, self.feed_id, list(sample))
        found = {r["external_id"]: r for r in rows}
        mismatches = []
        for ext, expected in sample.items():
            r = found.get(ext)
            if r is None:
                mismatches.append(f"{ext}: missing")
                continue
            actual = (
                r["vendor_sku"],
                r["barcode"],
                r["name"],
                r["inventory_quantity"],
                r["inventory_policy"],
                r["retail_price"],
                r["compare_at_price"],
                r["grams"],
            )
            if actual != expected:
                mismatches.append(f"{ext}: expected {expected}, found {actual}")
        check = TableCheck(got["n"], totals.items, got["qty"], totals.quantity_sum, mismatches)
        m.note = f"{m.note}, {check.summary()}" if m.note else check.summary()
        if not check.ok:
            self.fail(
                m,
                f"table: expected {totals.items:,} rows, quantity sum {totals.quantity_sum:,}; "
                f"found {check.rows:,}, {check.quantity_sum:,}",
            )
        for line in mismatches[:3]:
            say(f"    {m.label} mismatch: {line}")

    async def check_queue(self, m: Measurement) -> None:
        """After the consumer is gone: unacked messages would be back in the queue."""
        left = await self.queue_left()
        if left:
            self.fail(m, f"{left} message(s) left in the queue (not acked)")
        else:
            m.note = f"{m.note}, queue empty" if m.note else "queue empty"

    # -- R: the raw client ----------------------------------------------------------------------

    async def raw(self) -> None:
        say(f"R: raw consume + ack, prefetch {self.opts.r_prefetch} ...")
        ids = await self.preload("R")
        what = f"raw aio-pika consume + ack, prefetch {self.opts.r_prefetch}"
        m = self.add(Measurement("R", what, self.items))
        before = procstat.snapshot({os.getpid(): "bench (consumer)"})
        got = await amqp.raw_consume(
            self.mq, C.QUEUE_UPDATE, len(ids), self.opts.r_prefetch, self.opts.timeout_s
        )
        after = procstat.snapshot({os.getpid(): "bench (consumer)"})
        if got.seconds is None:
            self.fail(m, f"deadline: {len(got.received)} of {len(ids)} in {self.opts.timeout_s} s")
        else:
            m.seconds = got.seconds
            cpu = procstat.used(before, after)
            self.details.append(f"R CPU: {procstat.describe(cpu, got.seconds)}")
        index = {mid: i for i, mid in enumerate(ids)}
        wrong = sum(
            1 for mid, body in got.received if mid not in index or self.bodies[index[mid]] != body
        )
        distinct = len({mid for mid, _ in got.received})
        m.note = f"{len(got.received):,} acked, {distinct:,} distinct"
        if wrong or distinct != len(ids):
            self.fail(m, f"{wrong} unknown or changed bodies, {distinct} distinct of {len(ids)}")
        await self.check_queue(m)

    # -- W: the daemon --------------------------------------------------------------------------

    async def worker(self) -> None:
        what = "feed-worker run, half new, half updates"
        if self.feed_worker is None:
            m = self.add(Measurement("W", what, self.items))
            self.fail(m, "not run: no feed-worker in .venv/bin (pip install -e .)")
            return
        say("W: feed-worker run ...")
        await self.seed()
        await self.preload("W")
        m = self.add(Measurement("W", what, self.items))
        dead_before = await self.dead_letters()
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "AMQP_URL": self.amqp_url,
            "FEED_WORKER_HTTP_PORT": "0",
            "FEED_WORKER_LOG_LEVEL": "warning",
            **self.opts.worker_env,
        }
        if self.opts.worker_env:
            settings = " ".join(f"{k}={v}" for k, v in self.opts.worker_env.items())
            m.what += f" ({settings})"
            self.details.append(f"W daemon environment added: {settings}")
        log_path = self.logs / "push-W.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self.bodies)
        with log_path.open("wb") as log:
            before = procstat.snapshot()
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                self.feed_worker, "run", stdout=log, stderr=asyncio.subprocess.STDOUT, env=env
            )
            try:
                done = await self._watch_worker(m, proc, start, n)
                rss = procstat.peak_rss_mib(proc.pid)
                after = procstat.snapshot({proc.pid: "feed-worker"})
            finally:
                code = await self._stop(proc)
                await self._profiled()
        if done is not None:
            m.seconds = done
            m.rss_mib = rss
            cpu = procstat.used(before, after)
            self.details.append(f"W CPU: {procstat.describe(cpu, done)}")
        if code != 0:
            self.fail(m, f"daemon exited {code}, not 0 (log {log_path})")
            say("\n".join(f"    | {line}" for line in _tail(log_path).splitlines()))
        await self.check_queue(m)
        dead = await self.dead_letters() - dead_before
        if dead:
            self.fail(m, f"{dead} message(s) dead-lettered (log {log_path})")
        await self.check_table(m)
        await self.push_runs(m)

    async def _watch_worker(
        self, m: Measurement, proc: asyncio.subprocess.Process, start: float, n: int
    ) -> float | None:
        """Seconds from the daemon's start until the queue is empty and all n messages are
        applied (their push runs committed); None when it died or the deadline passed."""
        channel = await self.mq.channel()
        consuming: float | None = None
        try:
            deadline = start + self.opts.timeout_s
            while time.perf_counter() < deadline:
                if proc.returncode is not None:
                    self.fail(m, f"the daemon stopped by itself, exit {proc.returncode}")
                    return None
                state = await amqp.queue_state(channel, C.QUEUE_UPDATE)
                applied = await self.pg.fetchval(APPLIED_MESSAGES, self.feed_id)
                now = time.perf_counter()
                if consuming is None and (state.consumers or state.ready < n):
                    consuming = now - start
                    if self.opts.profile:
                        self.profiler = await self._profile(proc.pid)
                if state.ready == 0 and applied >= n:
                    self.details.append(
                        f"W: consuming {consuming or 0:.2f} s after the start; "
                        f"{now - start - (consuming or 0):.2f} s from then to the last commit"
                    )
                    return now - start
                await asyncio.sleep(POLL_S)
            self.fail(m, f"deadline: not done in {self.opts.timeout_s} s")
            return None
        finally:
            await channel.close()

    async def _profile(self, pid: int) -> asyncio.subprocess.Process | None:
        binary = shutil.which("py-spy") or shutil.which("py-spy", path=Path(sys.executable).parent)
        if binary is None:
            say("  py-spy is not installed (pip install py-spy); W runs unprofiled")
            return None
        out = self.logs / "push-W.pyspy"
        argv = [
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(PYSPY_RATE),
            "--nonblocking",
            "--format",
            "raw",
            "-o",
            str(out),
        ]
        return await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

    async def _profiled(self) -> None:
        """py-spy stops (and writes its samples) when the daemon exits."""
        if self.profiler is None:
            return
        try:
            await asyncio.wait_for(self.profiler.wait(), STOP_DEADLINE_S)
        except TimeoutError:
            self.profiler.terminate()
            await self.profiler.wait()
        self.details.append(f"W was sampled by py-spy (slower): {self.logs / 'push-W.pyspy'}")

    async def _stop(self, proc: asyncio.subprocess.Process) -> int:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_DEADLINE_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return proc.returncode if proc.returncode is not None else -1

    async def push_runs(self, m: Measurement) -> None:
        r = await self.pg.fetchrow(PUSH_RUNS, self.feed_id)
        assert r is not None
        totals = pushgen.totals(self.items)
        new = totals.items - totals.existing
        per_batch = r["messages"] / r["batches"] if r["batches"] else 0
        self.details.append(
            f"W feed_runs: {r['runs']} push run(s), {r['batches']} batches "
            f"({per_batch:.1f} messages each), messages {r['messages']}, rows_read "
            f"{r['rows_read']}, inserted {r['inserted']}, updated {r['updated']}, unchanged "
            f"{r['unchanged']}, rejected {r['rejected']}, duplicates {r['duplicates']}, "
            f"stale {r['stale']}"
        )
        expected = (len(self.bodies), self.items, new, totals.existing, 0, 0)
        actual = (
            r["messages"],
            r["rows_read"],
            r["inserted"],
            r["updated"],
            r["unchanged"],
            r["rejected"],
        )
        if actual != expected:
            self.fail(m, f"push run counts {actual}, expected {expected}")

    # -- P: the naive peer ----------------------------------------------------------------------

    async def naive(self) -> None:
        say(f"P: naive per-message upsert, prefetch {self.opts.p_prefetch} ...")
        await self.seed()
        await self.preload("P")
        what = "naive: 1 transaction + executemany upsert per message"
        m = self.add(Measurement("P", what, self.items))
        sql = (db.SQL_DIR / "naive_upsert.sql").read_text()
        n = len(self.bodies)
        before = procstat.snapshot({os.getpid(): "bench (peer)"})
        seconds = await naive_consume(
            self.mq, self.pg, sql, n, self.opts.p_prefetch, self.opts.timeout_s
        )
        after = procstat.snapshot({os.getpid(): "bench (peer)"})
        if seconds is None:
            self.fail(m, f"deadline: not done in {self.opts.timeout_s} s")
        else:
            m.seconds = seconds
            cpu = procstat.used(before, after)
            self.details.append(f"P CPU: {procstat.describe(cpu, seconds)}")
        await self.check_queue(m)
        await self.check_table(m)

    async def run_all(self) -> None:
        steps = {"R": self.raw, "W": self.worker, "P": self.naive}
        for name in RUNS:
            if name not in self.opts.skip:
                await steps[name]()

    # -- the report -----------------------------------------------------------------------------

    def render(self, header: list[str]) -> str:
        out = ["", *header, ""]
        out.append(
            f"{'run':<6} {'what':<58} {'seconds':>8} {'items/s':>9} {'msg/s':>7} {'RSS':>7}  check"
        )
        for m in self.measurements.values():
            secs = f"{m.seconds:8.2f}" if m.seconds is not None else f"{'-':>8}"
            rate = f"{m.rows / m.seconds:9,.0f}" if m.seconds else f"{'-':>9}"
            msgs = f"{m.rows / self.opts.variants / m.seconds:7,.0f}" if m.seconds else f"{'-':>7}"
            rss = f"{m.rss_mib:3.0f} MiB" if m.rss_mib is not None else f"{'':>7}"
            what = m.what if len(m.what) <= 58 else m.what[:55] + "..."
            out.append(f"{m.label:<6} {what:<58} {secs} {rate} {msgs} {rss}  {m.note}")
        out += ["", f"{'ratio':<6} {'meaning (items/s over items/s)':<40} {'value':>6}  target"]
        for name, num, den, limit, meaning in TARGETS:
            value = self._ratio(num, den)
            shown = f"{value:6.2f}" if value is not None else f"{'n/a':>6}"
            verdict = "n/a" if value is None else ("met" if value >= limit else "NOT MET")
            out.append(f"{name:<6} {meaning:<40} {shown}  >= {limit:g}  {verdict}")
        if self.details:
            out += ["", *self.details]
        return "\n".join(out)

    def _ratio(self, num: str, den: str) -> float | None:
        a, b = self.measurements.get(num), self.measurements.get(den)
        if a is None or b is None or not a.seconds or not b.seconds or not (a.ok and b.ok):
            return None
        return b.seconds / a.seconds  # same items: rate ratio = inverse time ratio


async def naive_consume(
    mq: AbstractConnection,
    pg: asyncpg.Connection,
    sql: str,
    expected: int,
    prefetch: int,
    deadline_s: float,
) -> float | None:
    """The naive peer: per message, decode, one transaction with an executemany upsert of its
    variants, commit, ack. Seconds from basic.consume to the last ack; None at the deadline."""
    channel = await mq.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(C.QUEUE_UPDATE, ensure=False)
    done = 0
    start = time.perf_counter()
    try:
        async with asyncio.timeout(deadline_s), queue.iterator() as messages:
            async for message in messages:
                data = orjson.loads(message.body)
                feed_id = data["feedId"]
                records = [_record(feed_id, v) for v in data["variants"]]
                async with pg.transaction():
                    await pg.executemany(sql, records)
                await message.ack()
                done += 1
                if done >= expected:
                    return time.perf_counter() - start
    except TimeoutError:
        return None
    finally:
        await channel.close()
    return None


def _record(feed_id: int, v: dict[str, Any]) -> tuple[object, ...]:
    """naive_upsert.sql's parameters: feed, external id, sku, barcode, name, retail price,
    compare-at price, quantity, grams."""
    compare = v.get("compareAtPrice")
    return (
        feed_id,
        v["externalId"],
        v.get("vendorSku"),
        v.get("barcode"),
        v.get("name"),
        Decimal(v["retailPrice"]),
        Decimal(compare) if compare is not None else None,
        int(v["inventoryQuantity"]),
        Decimal(v.get("grams") or 0),
    )


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def setup_database(opts: Options, url: str, feed_worker: str | None) -> None:
    """Drop, create and migrate the benchmark's database (`feed-worker migrate`)."""
    if feed_worker is None:
        raise SetupError("no feed-worker in .venv/bin to migrate with (pip install -e .)")
    await db.recreate_database(url, opts.db_name)
    env = {**os.environ, "DATABASE_URL": url}
    result = await run_child_async(
        [feed_worker, "migrate"], log=opts.workdir / "logs" / "push-migrate.log", env=env
    )
    if not result.ok:
        raise SetupError(
            f"`feed-worker migrate` failed (exit {result.returncode}):\n{result.tail()}"
        )


async def create_feed(pg: asyncpg.Connection) -> int:
    provider = await pg.fetchval(db.CREATE_PROVIDER, "feed-worker push benchmark")
    feed_id: int = await pg.fetchval(
        "INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type) "
        "VALUES ($1, 'push bench', 'webhook') RETURNING id",
        provider,
    )
    return feed_id


def _broker_version(mq: AbstractConnection) -> str:
    transport = mq.transport
    properties = transport.connection.server_properties if transport is not None else {}
    version = properties.get("version", "?")
    return version.decode() if isinstance(version, bytes) else str(version)


async def header(bench: Bench) -> list[str]:
    size = sum(len(b) for b in bench.bodies) / len(bench.bodies)
    version = await bench.pg.fetchval("SHOW server_version")
    mq_version = _broker_version(bench.mq)
    totals = pushgen.totals(bench.items)
    return [
        f"feed-worker push benchmark: {len(bench.bodies):,} persistent messages x "
        f"{bench.opts.variants} variants = {bench.items:,} items, {size / 1000:.1f} KB a message; "
        f"{totals.existing:,} of the items exist before W and P (updates), the rest are new",
        f"PostgreSQL {version}, database {bench.opts.db_name}; RabbitMQ {mq_version}, quorum "
        f"queue {C.QUEUE_UPDATE}; {os.cpu_count()} CPUs, Python {platform.python_version()}",
    ]


async def main(opts: Options) -> int:
    start = time.perf_counter()
    feed_worker = feed_worker_binary()
    url = db.with_database(os.environ.get("DATABASE_URL", DEFAULT_PG_URL), opts.db_name)
    base_amqp = os.environ.get("AMQP_URL", amqp.DEFAULT_AMQP_URL)
    amqp_url = with_vhost(base_amqp, opts.vhost) if opts.vhost else base_amqp
    delivery_limit = Settings.from_env().delivery_limit  # what the daemon will declare
    stack = contextlib.AsyncExitStack()
    try:
        async with stack:
            try:
                if opts.vhost:
                    await create_vhost(opts.vhost, base_amqp.split("//")[1].split(":")[0])
                    stack.push_async_callback(delete_vhost, opts.vhost)
                await setup_database(opts, url, feed_worker)
                pg = await asyncpg.connect(url)
                stack.push_async_callback(pg.close)
                mq = await amqp.connect(amqp_url)
                stack.push_async_callback(mq.close)
                await amqp.fresh_topology(mq, delivery_limit)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise SetupError(f"{type(exc).__name__}: {exc}") from exc
            feed_id = await create_feed(pg)
            made = time.perf_counter()
            bodies = pushgen.bodies(feed_id, opts.messages, opts.variants)
            say(f"generated {len(bodies):,} messages in {time.perf_counter() - made:.1f} s")
            bench = Bench(opts, url, amqp_url, pg, mq, feed_id, bodies, feed_worker, delivery_limit)
            top = await header(bench)
            say("\n".join(top))
            await bench.run_all()
    except SetupError as exc:
        say(f"cannot set up the benchmark: {exc}")
        return 2
    say(bench.render(top))
    say(f"\nbenchmark took {time.perf_counter() - start:.0f} s; logs in {opts.workdir / 'logs'}")
    if failed := [m for m in bench.measurements.values() if not m.ok]:
        say(f"failed or wrong: {', '.join(m.label for m in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
