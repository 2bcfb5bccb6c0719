"""Fleet benchmark: one `feed-worker run` daemon (default settings) pulling many small
feeds, CSV files served by a real HTTP server on loopback, every pull-request published at
once; the latency of a one-row pull; head-of-line blocking behind a big pull; and the
statements and transactions one small pull sends to Postgres.

Run from the repository root: `.venv/bin/python -m tests.bench.fleet [--quick]`.
Not a pass/fail test: it prints times, rates, percentiles and their targets. It exits 1
when a run failed or did not do what its file says, 2 when the benchmark could not be set
up. Parts (`--only`, `--skip`), each on empty items (truncated before it):

  R  the reference: one 1M-row pull through the same daemon, publish -> finished
  A  2,000 feeds x 1,000 rows: A1 first pulls (inserts), A2 the same files again
     (an hourly refresh: nothing changed); first publish -> last run finished
  D  the floor of A1: the database alone (tests/bench/fleetfloor.py), fleet A's files
     read from disk and applied by hand, one transaction each (COPY into a temp table +
     INSERT ... ORDER BY external_id ON CONFLICT ... WHERE IS DISTINCT FROM), as many
     connections as the daemon runs small pulls (2; --set FEED_WORKER_PULL_CONCURRENCY),
     and twice as many: feeds/s, Postgres CPU per feed; A1/D
  B  5,000 feeds x 100 rows: B1 first pulls (B2, the refresh, with --again A,B)
  L  a one-row feed pulled 200 times one after the other (after 20 untimed): publish ->
     feed_runs.finished_at, and -> the feed.run-completed event heard
  H  300 feeds x 1,000 rows (refreshes) alone (H0), then with a 3M-row pull started first
     and still in flight (H1): each small run's publish -> finished, p95
  T  pulls of a one-row feed (--rt-rows: more rows), every statement of the database
     logged (a daemon started after `ALTER DATABASE ... SET log_min_duration_statement =
     0`, reset at the end): round trips, server time and transactions per run, by statement

Targets: A1 >= 150 feeds/s; L p50 <= 5 ms; H1 p95 <= 2 x H0 p95.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from tests.bench import db, feedgen, fleetfloor, pglog, procstat, pulls
from tests.bench.amqp import DEFAULT_AMQP_URL, SetupError
from tests.bench.children import run_child_async
from tests.bench.fleetreport import Report, Row
from tests.bench.httpserver import serve_files
from tests.bench.pull_csv import feed_worker_binary, say
from tests.bench.services import Child, StartError
from tests.support.wait import poll
from worker import constants as C

PARTS = ("R", "A", "D", "B", "L", "H", "T")
DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/postgres"
FILES_PER_SIZE = 8  # distinct files a fleet's feeds share (seeds 101..108)
RESET = ("TRUNCATE inventory_feed_variants, variant_inventory_updates, provider_daily_items, "
         "feed_run_rejects, feed_runs, notifications")
SCHEDULER_PIDS = ("SELECT pid FROM pg_stat_activity WHERE datname = $1 "
                  "AND application_name LIKE 'feed-worker scheduler%'")
TIMINGS = ("total_s", "stream_s", "source_wait_s", "merge_s")  # pipeline/pull.apply's

# The benchmark database's pulls streaming into their staging tables.
COPYING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = $1 AND state = 'active'
  AND (query LIKE 'COPY %pull_staging%' OR query LIKE 'COPY %inventory_feed_variants%')
"""
BIG_BEFORE = """
INSERT INTO feed_runs (inventory_feed_id, kind, status, started_at, finished_at, rows_read)
VALUES ($1, 'pull', 'succeeded', now() - interval '1 hour', now() - interval '1 hour', $2)
"""


@dataclass(frozen=True)
class Options:
    parts: frozenset[str]
    again: frozenset[str]  # fleets pulled a second time
    a: tuple[int, int]  # feeds, rows
    b: tuple[int, int]
    ref_rows: int
    pulls: int
    warmup: int
    hol_feeds: int
    big_rows: int
    rt_pulls: int
    rt_rows: int
    db_name: str
    workdir: Path
    pg_log: Path
    daemon_env: dict[str, str]
    timeout_s: float


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: fleets of 200 x 1,000 and 500 x 100 "
        "rows, a 100,000-row reference, 50 one-row pulls, 40 feeds behind 500,000 rows")
    add("--only", default="", help=f"comma-separated parts to run, of {', '.join(PARTS)}")
    add("--skip", default="", help="comma-separated parts to leave out")
    add("--again", default="A", help="fleets pulled a second time, unchanged (A, B, A,B)")
    add("--a", type=int, nargs=2, metavar=("FEEDS", "ROWS"), help="fleet A (2000 1000)")
    add("--b", type=int, nargs=2, metavar=("FEEDS", "ROWS"), help="fleet B (5000 100)")
    add("--ref-rows", type=int, help="rows of the reference pull R (1000000)")
    add("--pulls", type=int, help="timed one-row pulls of L (200)")
    add("--warmup", type=int, default=20, help="untimed one-row pulls before L and T")
    add("--hol-feeds", type=int, help="small feeds of H (300, of fleet A's row count)")
    add("--big-rows", type=int, help="rows of H's big pull (3000000)")
    add("--rt-pulls", type=int, default=50, help="pulls counted in T")
    add("--rt-rows", type=int, default=1, help="rows of the feed T pulls (1)")
    add("--db-name", default="feed_worker_fleet_bench", help="dropped and created at the start")
    add("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "feed-worker-bench")
    add("--pg-log", type=Path, default=pglog.DEFAULT_LOG, help="the Postgres server's log, T")
    add("--set", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment of the daemon, e.g. FEED_WORKER_PULL_CONCURRENCY=4")
    add("--timeout", type=float, default=600.0, help="seconds a batch of runs may take")
    args = parser.parse_args(argv)

    def parts(text: str) -> set[str]:
        got = {s.strip().upper() for s in text.split(",") if s.strip()}
        if got - set(PARTS):
            parser.error(f"parts are {', '.join(PARTS)}, not {', '.join(sorted(got))}")
        return got

    chosen = (parts(args.only) or set(PARTS)) - parts(args.skip)
    env = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set takes NAME=VALUE, not {item!r}")
        env[name] = value
    quick = args.quick
    a = tuple(args.a or ((200, 1000) if quick else (2000, 1000)))
    b = tuple(args.b or ((500, 100) if quick else (5000, 100)))
    return Options(
        frozenset(chosen), frozenset(parts(args.again)), (a[0], a[1]), (b[0], b[1]),
        args.ref_rows or (100_000 if quick else 1_000_000), args.pulls or (50 if quick else 200),
        args.warmup, args.hol_feeds or (40 if quick else 300),
        args.big_rows or (500_000 if quick else 3_000_000), args.rt_pulls, args.rt_rows,
        args.db_name, args.workdir, args.pg_log, env, args.timeout)


@dataclass
class Bench:
    opts: Options
    url: str
    amqp_url: str
    feed_worker: str
    pg: asyncpg.Connection
    mq: AbstractConnection
    base_url: str
    files: dict[str, Path]
    report: Report = field(default_factory=Report)
    daemon: Child | None = None
    channel: AbstractChannel | None = None
    exchange: AbstractExchange | None = None
    events: pulls.RunEvents | None = None

    @property
    def logs(self) -> Path:
        return self.opts.workdir / "logs"

    def file_urls(self, rows: int, n: int) -> list[str]:
        names = [f"{rows}-{k}.csv" for k in range(FILES_PER_SIZE)]
        return [f"{self.base_url}/{names[i % len(names)]}" for i in range(n)]

    # -- the daemon -----------------------------------------------------------------------------

    async def start_daemon(self, name: str) -> None:
        env = {**os.environ, "DATABASE_URL": self.url, "AMQP_URL": self.amqp_url,
               "FEED_WORKER_HTTP_PORT": "0", "FEED_WORKER_LOG_FORMAT": "json",
               "FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32", **self.opts.daemon_env}
        self.daemon = await Child.start(name, [self.feed_worker, "run"], env,
                                        self.logs / f"fleet-{name}.log")
        await self.daemon.event("daemon.send_work")  # the topology is declared
        self.channel = await self.mq.channel(publisher_confirms=True, on_return_raises=True)
        self.exchange = await self.channel.get_exchange(C.EXCHANGE, ensure=False)
        self.events = pulls.RunEvents()
        await self.events.start(self.mq)

    async def stop_daemon(self) -> None:
        if self.events is not None:
            await self.events.close()
        if self.channel is not None and not self.channel.is_closed:
            await self.channel.close()
        if self.daemon is not None:
            code = await self.daemon.stop()
            if code != 0:
                self.report.problems.append(f"{self.daemon.name} exited {code} ({self.daemon.log})")
            self.daemon = None

    # -- batches --------------------------------------------------------------------------------

    async def batch(self, row: Row, feed_ids: list[int], expect: str) -> Row:
        """Publish a pull-request per feed at once; wait for every run; check them."""
        assert self.exchange is not None
        assert self.daemon is not None
        self.report.add(row)
        say(f"{row.label}: {row.what} ...")
        ours = {self.daemon.proc.pid: "feed-worker", os.getpid(): "bench (HTTP, publish)"}
        before = procstat.snapshot_database(self.opts.db_name, ours)
        sent = await pulls.publish(self.exchange, feed_ids)
        finished = await pulls.wait_finished(self.pg, sent, self.opts.timeout_s)
        after = procstat.snapshot_database(self.opts.db_name, ours)
        row.result = got = await pulls.outcome(self.pg, sent)
        if not finished:
            self.fail(row, f"deadline: {got.runs} of {len(feed_ids)} runs in "
                      f"{self.opts.timeout_s:g} s")
        total = row.feeds * row.rows
        wanted = {"succeeded": row.feeds}
        if got.statuses != wanted:
            self.fail(row, f"statuses {got.statuses}, first error: {got.first_error}")
        elif got.totals["rows_read"] != total or got.totals[expect] != total:
            self.fail(row, f"counts {got.totals}, expected rows_read = {expect} = {total}")
        else:
            row.note = f"{row.feeds:,} succeeded, {expect} {total:,}"
        if got.wall_s:
            self.cpu(row.label, procstat.used(before, after), row.feeds, got.wall_s)
        return row

    def cpu(self, label: str, used: dict[str, float], runs: int, wall_s: float) -> None:
        """CPU per run of the daemon, its database's backends, the broker, the benchmark."""
        parts = [f"{who} {1000 * s / runs:.1f} ms ({100 * s / wall_s:.0f}%)"
                 for who, s in sorted(used.items(), key=lambda kv: -kv[1])]
        self.report.details.append(f"{label} CPU per run (share of one core): {', '.join(parts)}")

    def fail(self, row: Row, why: str) -> None:
        row.ok = False
        row.note = f"{row.note}, {why}" if row.note else why
        say(f"  {row.label}: {why}")

    async def fresh(self) -> None:
        await self.pg.execute(RESET)

    async def settle(self) -> None:
        """What an hour between two pulls gives: autovacuum has been by."""
        await self.pg.execute("VACUUM ANALYZE inventory_feed_variants")

    # -- the parts ------------------------------------------------------------------------------

    async def reference(self) -> None:
        await self.fresh()
        rows = self.opts.ref_rows
        [feed] = await pulls.create_feeds(self.pg, "reference", [f"{self.base_url}/ref.csv"])
        await self.batch(Row("R", f"one {rows:,}-row pull (the reference rate)", 1, rows),
                         [feed], "inserted")

    async def fleet(self, label: str, feeds: int, rows: int) -> None:
        await self.fresh()
        ids = await pulls.create_feeds(self.pg, f"fleet {label}", self.file_urls(rows, feeds))
        what = f"{feeds:,} feeds x {rows:,} rows"
        first = await self.batch(Row(f"{label}1", f"{what}, first pulls", feeds, rows), ids,
                                 "inserted")
        if not first.ok or label not in self.opts.again:
            return
        await self.settle()
        await self.batch(Row(f"{label}2", f"{what} again, unchanged", feeds, rows), ids,
                         "unchanged")

    async def floor(self) -> None:
        """Fleet A's first pulls done by the database alone, with the daemon's small-pull
        concurrency and twice it."""
        feeds, rows = self.opts.a
        lane = int(self.opts.daemon_env.get("FEED_WORKER_PULL_CONCURRENCY", "2"))
        paths = [self.files[f"{rows}-{k}.csv"] for k in range(FILES_PER_SIZE)]
        for connections in (lane, 2 * lane):
            await self.fresh()
            ids = await pulls.create_feeds(self.pg, "floor", self.file_urls(rows, feeds))
            say(f"D: {feeds:,} feeds x {rows:,} rows by the database alone, "
                f"{connections} connections ...")
            conns = await fleetfloor.connect(self.url, connections)
            try:
                before = procstat.snapshot_database(self.opts.db_name, {})
                got = await fleetfloor.apply_all(
                    conns, [(f, paths[i % len(paths)]) for i, f in enumerate(ids)])
                after = procstat.snapshot_database(self.opts.db_name, {})
            finally:
                for conn in conns:
                    await conn.close()
            pg = sum(s for who, s in procstat.used(before, after).items()
                     if who.startswith("postgres"))
            if got.written != feeds * rows:
                self.report.problems.append(f"D: wrote {got.written:,} rows, not {feeds * rows:,}")
            self.report.floors[connections] = got.feeds_s
            self.report.details.append(
                f"D (database alone, {connections} connections): {got.seconds:.2f} s, "
                f"{got.feeds_s:,.1f} feeds/s, postgres {1000 * pg / feeds:.1f} ms CPU a feed "
                f"({100 * pg / got.seconds:.0f}% of one core)")
        self.report.lane = lane
        # The floor's writes (4M rows) must not be paid by the parts after it (a checkpoint
        # that lands in L's one-row pulls doubled their p50).
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await self.pg.execute("CHECKPOINT")

    async def one_by_one(self, feed: int, n: int) -> list[tuple[str, float, float]]:
        """n pull-requests of `feed`, each published once the previous run's event was
        heard: (message id, sent, heard)."""
        assert self.exchange is not None
        assert self.events is not None
        got = []
        for _ in range(n):
            sent = await pulls.publish(self.exchange, [feed])
            heard, _event = await self.events.next_for(feed, self.opts.timeout_s)
            [(message_id, (_, at))] = sent.sent.items()
            got.append((message_id, at, heard))
        return got

    async def one_feed(self, name: str) -> int:
        [feed] = await pulls.create_feeds(self.pg, name, [f"{self.base_url}/{name}"])
        return feed

    async def latency_part(self) -> None:
        await self.fresh()
        feed = await self.one_feed("one.csv")
        n = self.opts.pulls
        say(f"L: {self.opts.warmup} + {n} one-row pulls, one after the other ...")
        await self.one_by_one(feed, self.opts.warmup)
        assert self.daemon is not None
        ours = {self.daemon.proc.pid: "feed-worker", os.getpid(): "bench (HTTP, publish)"}
        before = procstat.snapshot_database(self.opts.db_name, ours)
        timed = await self.one_by_one(feed, n)
        after = procstat.snapshot_database(self.opts.db_name, ours)
        self.cpu("L", procstat.used(before, after), n, timed[-1][2] - timed[0][1])
        batch = pulls.Batch({mid: (feed, at) for mid, at, _ in timed})
        runs = {r["message_id"]: r for r in await self.pg.fetch(pulls.RUNS, batch.ids)}
        bad = [r for r in runs.values() if r["status"] != "succeeded"]
        if len(runs) != n or bad:
            self.report.problems.append(f"L: {len(runs)} runs of {n}, {len(bad)} not succeeded")
            return
        series = {
            "publish -> finished_at": [runs[m]["finished"] - at for m, at, _ in timed],
            "publish -> run-completed event heard": [heard - at for _, at, heard in timed],
            "publish -> claimed (started_at)": [runs[m]["started"] - at for m, at, _ in timed],
            "claimed -> finished_at": [runs[m]["finished"] - runs[m]["started"]
                                       for m, _, _ in timed],
        }
        for key in TIMINGS:  # the run's own timings (feed_runs.timings), seconds
            series[f"  of which {key}"] = [orjson.loads(r["timings"]).get(key, 0.0)
                                           for r in runs.values()]
        self.report.latency_pulls = n
        self.report.latency = {k: sorted(1000 * v for v in vs) for k, vs in series.items()}

    async def head_of_line(self) -> None:
        await self.fresh()
        feeds, rows, big_rows = self.opts.hol_feeds, self.opts.a[1], self.opts.big_rows
        ids = await pulls.create_feeds(self.pg, "small", self.file_urls(rows, feeds))
        [big] = await pulls.create_feeds(self.pg, "big", [f"{self.base_url}/big.csv"])
        # A big feed pulled before, as an hourly one is (its last pull read as many rows):
        # the daemon knows it for a large one, as it would in use.
        await self.pg.execute(BIG_BEFORE, big, big_rows)
        what = f"{feeds:,} feeds x {rows:,} rows again"
        say("H: first pulls of the small feeds (untimed) ...")
        await pulls.wait_finished(self.pg, await pulls.publish(self.exchange_(), ids),
                                  self.opts.timeout_s)
        await self.settle()
        await self.batch(Row("H0", f"{what}, alone", feeds, rows), ids, "unchanged")
        say(f"H: a {big_rows:,}-row pull first ...")
        started = await pulls.publish(self.exchange_(), [big])
        if not await self.big_underway(started):
            self.report.problems.append("H1: the big pull did not start")
            return
        h1 = await self.batch(Row("H1", f"{what}, behind a {big_rows:,}-row pull", feeds,
                                  rows), ids, "unchanged")
        await pulls.wait_finished(self.pg, started, self.opts.timeout_s)
        big_run = await pulls.outcome(self.pg, started)
        end, last = big_run.last_finished, h1.result.last_finished if h1.result else None
        if end is not None and last is not None and last > end:
            self.fail(h1, "the big pull ended before the small runs (--big-rows more)")
        rate = f"{big_rows / big_run.wall_s:,.0f} rows/s" if big_run.wall_s else "-"
        after = f"{end - last:.1f} s" if end is not None and last is not None else "-"
        self.report.details.append(f"H1 big pull: {big_run.statuses}, publish -> finished "
                            f"{big_run.wall_s or 0:.1f} s ({rate}); it ended {after} after "
                            "H1's last small run")

    def exchange_(self) -> AbstractExchange:
        assert self.exchange is not None
        return self.exchange

    async def big_underway(self, sent: pulls.Batch) -> bool:
        """The big run is claimed and its rows are streaming (its COPY runs: into staging, or
        a first import's straight into the items table)."""

        async def copying() -> bool:
            row = await self.pg.fetchrow(pulls.PROGRESS, sent.ids)
            return (row is not None and row["claimed"] > 0
                    and await self.pg.fetchval(COPYING, self.opts.db_name) > 0)

        return await poll(copying, timeout_s=60) is not None

    async def round_trips(self) -> None:
        """A daemon whose every statement is logged: the lines of N one-row pulls."""
        log, name = self.opts.pg_log, self.opts.db_name
        prefix = await self.pg.fetchval("SHOW log_line_prefix")
        if prefix != pglog.PREFIX or not os.access(log, os.R_OK):
            self.report.details.append(f"T: not counted: log_line_prefix {prefix!r} (wanted "
                                       f"{pglog.PREFIX!r}) or {log} not readable")
            return
        await self.stop_daemon()
        await self.fresh()
        feed = await self.one_feed("rt.csv")
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await self.pg.execute(f"ALTER DATABASE {quoted} SET log_min_duration_statement = 0")
        except asyncpg.InsufficientPrivilegeError as exc:
            self.report.details.append(f"T: not counted: {exc} (a superuser may set it)")
            return
        try:
            await self.start_daemon("daemon-logged")
            say(f"T: {self.opts.warmup} + {self.opts.rt_pulls} pulls of {self.opts.rt_rows:,} "
                "row(s), every statement logged ...")
            await self.one_by_one(feed, self.opts.warmup)
            await self.settle()
            skip = [r["pid"] for r in await self.pg.fetch(SCHEDULER_PIDS, name)]
            start = pglog.offset(log)
            await self.one_by_one(feed, self.opts.rt_pulls)

            async def logged() -> list[tuple[int, str, str, float]] | None:
                """The lines, once the last run's last statement is in the log."""
                got = pglog.read_entries(log, start, name, skip)
                last = pglog.count(got).kinds.get("runs:get_run")
                return got if last is not None and last.round_trips >= self.opts.rt_pulls \
                    else None

            entries = await poll(logged, timeout_s=10) or []
        finally:
            await self.pg.execute(f"ALTER DATABASE {quoted} RESET log_min_duration_statement")
        self.report.counted_pulls = self.opts.rt_pulls
        self.report.counted_rows = self.opts.rt_rows
        self.report.counted = pglog.count(entries)

    async def run_all(self) -> None:
        """The parts in order; one that breaks (the daemon gone, an event that never came)
        is a problem in the report, and the next one runs."""
        steps = {"R": self.reference, "A": lambda: self.fleet("A", *self.opts.a),
                 "D": self.floor,
                 "B": lambda: self.fleet("B", *self.opts.b), "L": self.latency_part,
                 "H": self.head_of_line, "T": self.round_trips}
        await self.start_daemon("daemon")
        try:
            for part in PARTS:
                if part not in self.opts.parts:
                    continue
                try:
                    await steps[part]()
                except (TimeoutError, pulls.BrokerError, StartError,
                        asyncpg.PostgresError) as exc:
                    self.report.problems.append(f"{part}: {type(exc).__name__}: {exc}")
                    if self.daemon is None or self.daemon.proc.returncode is not None:
                        break
        finally:
            await self.stop_daemon()


def generate(opts: Options) -> dict[str, Path]:
    """The served files: FILES_PER_SIZE per fleet row count, one row, the big ones."""
    start = time.perf_counter()
    sizes = {opts.a[1], opts.b[1]} if opts.parts & {"A", "B", "D", "H"} else set()
    files: dict[str, Path] = {}
    for rows in sorted(sizes):
        for k in range(FILES_PER_SIZE):
            made, _ = feedgen.ensure_feed(opts.workdir, rows, 101 + k, with_update=False,
                                          changed_share=0)
            files[f"{rows}-{k}.csv"] = made.base
    for name, rows in (("one.csv", 1), ("rt.csv", opts.rt_rows)):
        files[name] = feedgen.ensure_feed(opts.workdir, rows, 42, with_update=False,
                                          changed_share=0)[0].base
    for name, rows, part in (("ref.csv", opts.ref_rows, "R"), ("big.csv", opts.big_rows, "H")):
        if part in opts.parts:
            files[name] = feedgen.ensure_feed(opts.workdir, rows, 42, with_update=False,
                                              changed_share=0)[0].base
    say(f"{len(files)} feed files ready in {time.perf_counter() - start:.1f} s "
        f"under {opts.workdir}")
    return files


async def check_broker(mq: AbstractConnection) -> None:
    """Nobody else consumes from or waits in the daemon's queues: our daemon would take
    their messages (and dead-letter them: their feeds are not in our database), or theirs
    ours. Nothing is purged: a queue that is not empty is reported."""
    for name in (C.QUEUE_PULL, C.QUEUE_UPDATE):
        channel = await mq.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            continue  # not declared yet: our daemon will (the channel is closed)
        try:
            found = queue.declaration_result
            if found.consumer_count or found.message_count:
                raise SetupError(
                    f"{name} has {found.consumer_count} consumer(s) and {found.message_count} "
                    "message(s) waiting: use a RabbitMQ vhost of your own (AMQP_URL), or "
                    "purge it if a stopped benchmark left them")
        finally:
            await channel.close()


async def main(opts: Options) -> int:
    started = time.perf_counter()
    feed_worker = feed_worker_binary()
    if feed_worker is None:
        say("cannot set up the benchmark: no feed-worker in .venv/bin (pip install -e .)")
        return 2
    url = db.with_database(os.environ.get("DATABASE_URL", DEFAULT_PG_URL), opts.db_name)
    amqp_url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    files = generate(opts)
    stack = contextlib.AsyncExitStack()
    try:
        async with stack:
            await db.recreate_database(url, opts.db_name)
            migrated = await run_child_async(
                [feed_worker, "migrate"], log=opts.workdir / "logs" / "fleet-migrate.log",
                env={**os.environ, "DATABASE_URL": url})
            if not migrated.ok:
                raise SetupError(f"migrate failed: {migrated.tail()}")
            pg = await asyncpg.connect(url)
            stack.push_async_callback(pg.close)
            mq = await aio_pika.connect(amqp_url, timeout=10)
            stack.push_async_callback(mq.close)
            await check_broker(mq)
            base_url = await stack.enter_async_context(serve_files(files))
            bench = Bench(opts, url, amqp_url, feed_worker, pg, mq, base_url, files)
            version = await pg.fetchval("SHOW server_version")
            header = [
                "feed-worker fleet benchmark: one `feed-worker run`, default settings (but "
                "FEED_WORKER_ALLOWED_NETWORKS=127.0.0.1/32, FEED_WORKER_HTTP_PORT=0)"
                + (f" and {opts.daemon_env}" if opts.daemon_env else "")
                + f"; files over HTTP from {base_url}",
                f"PostgreSQL {version}, database {opts.db_name}; RabbitMQ at "
                f"{amqp_url.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs, Python "
                f"{platform.python_version()}; parts "
                + ", ".join(p for p in PARTS if p in opts.parts),
            ]
            say("\n".join(header))
            await bench.run_all()
    except (SetupError, StartError, pulls.BrokerError, OSError, asyncpg.PostgresError) as exc:
        say(f"cannot set up the benchmark: {type(exc).__name__}: {exc}")
        return 2
    say(bench.report.render(header))
    say(f"\nbenchmark took {time.perf_counter() - started:.0f} s; logs in "
        f"{opts.workdir / 'logs'}")
    failed = [r.label for r in bench.report.rows.values() if not r.ok]
    if failed or bench.report.problems:
        say(f"failed or wrong: {', '.join(failed) or 'see problems'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
