"""Pull benchmark: `feed-worker import` of a 1M-row CSV against the peers, printed as ratios.

Run from the repository root: `.venv/bin/python -m tests.bench.pull_csv [--quick]`.
Not a pass/fail test: it prints times, ratios and their targets. It exits 1 only when a run
failed or loaded the wrong data, 2 when the benchmark could not be set up.

  L  psql: \\copy into a typed temp table + INSERT ... ON CONFLICT ... WHERE IS DISTINCT FROM
  M  psql: \\copy into a typed temp table + MERGE (reference)
  E  feed-worker import of feed1.csv into an empty table (U: feed2.csv, 10% changed, full);
     the store has no variants yet. With L' (L inserting in key order: the stronger
     reference), after VACUUM ANALYZE + CHECKPOINT before each run (E, U, L') and back to
     back (Eb, Ub, L'b), the reference and feed-worker alternating (see refresh.py);
     `--only E` runs this block alone (L2, L' and U name it too)
  V  the value rules' cost (mapping.rules): feed-rules.csv (feed1.csv with valid GTIN-13
     barcodes and each quantity split over three warehouse columns) into an empty table
     without rules (V0), then with a 20% markup, .99 rounding, the 3-column quantity sum
     and GTIN checks (V), each twice (V0 V V V0), the faster counting: V/V0 (at most 1.10);
     Vs/V0 takes the rules' cost as the difference of the streams alone (the merges are the
     same SQL on as many rows, and vary by more than the rules cost)
  X  the marketplace rules' cost: E and U with them off (no auto-connect, no item history):
     E0, U0; then a store of 500,000 variants is seeded, a quarter of the feed's SKUs among
     them, and EC, UC run with the rules on (auto-connect against that store, history)
  S  a table shared by many feeds: EC and UC again (the store and rules as X left them), with
     the table holding three times as many items of another feed: ES, US
  N  asyncpg executemany upsert of the first 100,000 rows, scaled to all rows
  G  pgloader plain load of feed1.csv into a table without keys
  R  peak RSS of feed-worker import with --rss-rows rows (3M), to compare with E's, and of
     its refresh (RU, 10% changed), to compare with U's
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import csv
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson

import worker
from tests.bench import db, feedgen, peers, refresh
from tests.bench.children import ChildResult, run_child_async
from tests.bench.httpserver import serve_files
from tests.bench.report import TARGETS, Measurement, Report, format_run

RUNS = ("L", "M", "E", "V", "X", "S", "N", "G", "R")
RUN_ALIASES = {"L2": "E", "L'": "E", "U": "E"}  # E's block measures U and L' as well
FEEDS = ("L", "L'", "M", "E", "N", "R")
CHANGED_SHARE = 0.10
SET_CONNECT = "UPDATE inventory_feeds SET automatically_connect = $2 WHERE id = $1"
# The store: a quarter of the feed's SKUs (loaded by E0/U0) and as many of its own.
SEED_STORE = """
INSERT INTO variants (sku)
SELECT vendor_sku FROM inventory_feed_variants WHERE inventory_feed_id = $1 AND id % 4 = 0
UNION ALL
SELECT 'STORE-' || n FROM generate_series(1, (
    SELECT count(*) FROM inventory_feed_variants WHERE inventory_feed_id = $1) / 4) AS n
"""

# Another feed's items, for S: the table is shared by every feed.
SEED_OTHERS = """
INSERT INTO inventory_feed_variants (inventory_feed_id, external_id, vendor_sku, name,
                                     inventory_quantity, retail_price)
SELECT $1, 'OTHER-' || n, 'OS-' || n, 'another feed''s item ' || n, n % 100, 9.99
FROM generate_series(1, $2::int) AS n
"""


@dataclass(frozen=True)
class Options:
    rows: int
    rss_rows: int
    naive_rows: int
    seed: int
    workdir: Path
    db_name: str
    keep_db: bool
    skip: frozenset[str]


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.pull_csv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rows", type=int, help="rows of feed1.csv and feed2.csv (default 1000000)")
    add("--rss-rows", type=int, help="rows of the RSS run R, 0 leaves it out (default 3000000)")
    add("--quick", action="store_true", help="smoke run: 100000 rows, 300000 in the RSS run")
    add("--naive-rows", type=int, default=100_000, help="rows N upserts before scaling")
    add("--seed", type=int, default=42, help="seed of the generated feeds")
    add("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "feed-worker-bench")
    add("--db-name", default="feed_worker_bench", help="dropped and created at the start")
    add("--keep-db", action="store_true", help="use the database as it is: no drop or migrate")
    add("--skip", default="", help=f"comma-separated runs to leave out, of {', '.join(RUNS)}")
    add("--only", default="", help="comma-separated runs to do, the others left out; E's "
        "block (E, U and L', quiesced and back to back) is also named L2, L' or U")
    args = parser.parse_args(argv)
    skip, only = run_names(parser, "--skip", args.skip), run_names(parser, "--only", args.only)
    if only:
        skip |= set(RUNS) - only
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    rss_rows = args.rss_rows
    if rss_rows is None:
        rss_rows = 3 * rows if args.quick else 3_000_000
    return Options(
        rows=rows,
        rss_rows=rss_rows,
        naive_rows=min(args.naive_rows, rows),
        seed=args.seed,
        workdir=args.workdir,
        db_name=args.db_name,
        keep_db=args.keep_db,
        skip=skip,
    )


def run_names(parser: argparse.ArgumentParser, option: str, text: str) -> frozenset[str]:
    names = [s.strip().upper() for s in text.split(",") if s.strip()]
    runs = frozenset(RUN_ALIASES.get(name, name) for name in names)
    if runs - set(RUNS):
        parser.error(f"{option} takes runs of {RUNS}, not {sorted(runs - set(RUNS))}")
    return runs


def feed_worker_binary() -> str | None:
    """The feed-worker command to measure, with the worker's bytecode compiled first, as an
    installed package's is (an editable install on a machine with PYTHONDONTWRITEBYTECODE
    would compile its modules again in every process: 0.1 s of each import's start)."""
    compileall.compile_dir(str(Path(worker.__file__).parent), quiet=1)
    beside = Path(sys.executable).with_name("feed-worker")
    return str(beside) if beside.exists() else shutil.which("feed-worker")


def say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Import:
    """One `feed-worker import` run: which file into which feed, and what it should report."""

    label: str
    what: str
    feed: str
    served_as: str
    path: Path
    rows: int
    expected: str
    env: tuple[tuple[str, str], ...] = ()
    # the items as stored, when not as the file has them (the value rules' run)
    sample: Callable[[], dict[str, db.Item]] | None = None


@dataclass
class Bench:
    """One benchmark run: the database, the served files, and what was measured."""

    opts: Options
    url: str
    conn: asyncpg.Connection
    files: feedgen.FeedFiles
    rss_file: feedgen.FeedFiles | None
    feed_worker: str | None
    rules_file: Path | None = None
    base_url: str = ""
    feeds: dict[str, int] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    samples: dict[Path, dict[str, db.Item]] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.opts.workdir / "logs"

    @property
    def feed2(self) -> Path:
        assert self.files.updated is not None
        return self.files.updated

    def sample(self, path: Path, rows: int) -> dict[str, db.Item]:
        if path not in self.samples:
            self.samples[path] = db.read_sample(path, rows)
        return self.samples[path]

    async def fresh(self) -> None:
        await db.reset(self.conn)
        await db.quiesce(self.conn)

    async def check(self, m: Measurement, feed: str, path: Path, rows: int,
                    sample: dict[str, db.Item] | None = None) -> None:
        sample = self.sample(path, rows) if sample is None else sample
        check = await db.check_feed(self.conn, self.feeds[feed], rows, sample)
        m.note = f"{m.note}, {check.summary()}" if m.note else check.summary()
        m.ok = m.ok and check.ok
        for line in check.mismatches[:3]:
            say(f"    {m.label} mismatch: {line}")

    def failed(self, m: Measurement, result: ChildResult) -> None:
        m.ok = False
        m.note = f"FAILED (exit {result.returncode}), log {result.log}"
        say(f"  {m.label} failed, exit {result.returncode}; last lines of {result.log}:")
        say("\n".join(f"    | {line}" for line in result.tail().splitlines()))

    # -- L and M: psql by hand ------------------------------------------------------------------

    async def psql_pair(self, label: str, script: str, how: str) -> None:
        """Time `script` into an empty table (feed1.csv), then into the full one (feed2.csv)."""
        await self.fresh()
        empty = f"psql \\copy + {how}, empty table"
        if (await self.psql_run(f"{label}-empty", empty, script, label, False)).seconds:
            await db.quiesce(self.conn)
            full = f"psql \\copy + {how}, full, 10% changed"
            await self.psql_run(f"{label}-full", full, script, label, True)

    async def psql_run(self, name: str, what: str, script: str, feed: str,
                       full: bool) -> Measurement:
        """sql/`script` in psql, feed1.csv (or feed2.csv when `full`) into `feed`'s items."""
        rows = self.files.rows
        path, expect_written = (self.feed2, self.files.changed) if full else (self.files.base, rows)
        say(f"running {name} ...")
        log = self.logs / (name.replace("'", "2") + ".log")
        result, written = await peers.psql_load(script, self.url, self.feeds[feed], path, log)
        m = self.report.add(Measurement(name, what, rows))
        if not result.ok:
            self.failed(m, result)
            return m
        m.seconds = result.seconds
        m.note = f"wrote {written}"
        m.ok = written == expect_written
        await self.check(m, feed, path, rows)
        return m

    # -- E, U and R: feed-worker import ---------------------------------------------------------

    async def feed_worker_import(self, run: Import) -> Measurement:
        m = self.report.add(Measurement(run.label, run.what, run.rows))
        if self.feed_worker is None:
            m.ok, m.note = False, "not run: no feed-worker in .venv/bin (pip install -e .)"
            return m
        say(f"running {run.label} ...")
        feed_id = self.feeds[run.feed]
        url = f"{self.base_url}/{run.served_as}"
        argv = [self.feed_worker, "import", "--feed", str(feed_id), "--url", url]
        env = {**os.environ, "DATABASE_URL": self.url,
               "FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32",  # the loopback server
               **dict(run.env)}
        result = await run_child_async(argv, log=self.logs / f"{run.label}.log", env=env)
        feed_run = await db.last_run(self.conn, feed_id)
        self.report.runs.append(format_run(run.label, feed_run, run.expected))
        if not result.ok:
            self.failed(m, result)
            return m
        m.seconds, m.rss_mib = result.seconds, result.max_rss_mib
        await self.check(m, run.feed, run.path, run.rows,
                         run.sample() if run.sample is not None else None)
        return m

    async def value_rules(self) -> None:
        """V0 and V: the rules file into an empty table without value rules, then with them
        (the same feed, its mapping changed between the two)."""
        path, rows = self.rules_file, self.files.rows
        if path is None:
            return
        feed_id = self.feeds["E"]
        plain = Import("V0", "feed-worker import of feed-rules.csv, no value rules", "E",
                       "feed-rules.csv", path, rows, f"inserted {rows}")
        ruled = Import("V", "feed-worker import of feed-rules.csv, value rules on", "E",
                       "feed-rules.csv", path, rows, f"inserted {rows}, rejected 0",
                       sample=lambda: rules_sample(path, rows))
        # Each twice, in the order V0 V V V0, and the faster of each pair counts: one
        # import's merge alone varies by 15% on this machine, more than the rules cost.
        # The rules run in the stream (parse, map, COPY); the merge is the same SQL on as
        # many rows: V-streams also prints the rules' cost as the streams' difference.
        times: dict[str, list[float]] = {"V0": [], "V": []}
        streams: dict[str, list[float]] = {"V0": [], "V": []}
        try:
            for run, mapping in ((plain, {}), (ruled, VALUE_RULES), (ruled, VALUE_RULES),
                                 (plain, {})):
                await self.conn.execute(SET_MAPPING, feed_id, orjson.dumps(mapping).decode())
                await self.fresh()
                m = await self.feed_worker_import(run)
                if m.seconds is None:
                    return
                times[run.label].append(m.seconds)
                streams[run.label].append(await self.stream_seconds(feed_id))
        finally:
            await self.conn.execute(SET_MAPPING, feed_id, "{}")
        for label, got in times.items():
            m = self.report.measurements[label]
            m.seconds = min(got)
            m.note += f", best of {' and '.join(f'{t:.2f}' for t in got)} s"
        plain_s = self.report.measurements["V0"].seconds or 0.0
        extra = min(streams["V"]) - min(streams["V0"])
        self.report.add(Measurement(
            "V-streams", "V0 + (V's stream - V0's stream), best of each", rows,
            plain_s + extra, note=f"the rules' cost in the stream: {extra:+.2f} s"))

    async def stream_seconds(self, feed_id: int) -> float:
        run = await db.last_run(self.conn, feed_id)
        raw = run["timings"] if run is not None else None
        timings = orjson.loads(raw) if isinstance(raw, str) else dict(raw or {})
        return float(timings.get("stream_s", 0.0))

    async def rules(self) -> None:
        """E0 and U0: E and U without auto-connect and item history; then the store is
        seeded, and EC and UC run with both on."""
        feed_id = self.feeds["E"]
        await self.conn.execute(SET_CONNECT, feed_id, False)
        try:
            await self.import_pair("0", (("FEED_WORKER_ITEM_HISTORY", "false"),),
                                   ", rules off")
        finally:
            await self.conn.execute(SET_CONNECT, feed_id, True)
        await self.conn.execute(SEED_STORE, feed_id)
        await self.conn.execute("ANALYZE variants")
        store = await self.conn.fetchval("SELECT count(*) FROM variants")
        say(f"seeded a store of {store:,} variants")
        await self.import_pair("C", how=f", auto-connect ({store:,} variants) + history")

    async def shared(self) -> None:
        """ES and US: the imports of EC and UC, with three times as many items of another
        feed in the table (a merge must keep to its own feed's rows)."""
        others = 3 * self.files.rows
        await self.import_pair("S", how=f", {others:,} other items in the table", others=others)

    async def import_pair(self, suffix: str = "", env: tuple[tuple[str, str], ...] = (),
                          how: str = "", others: int = 0) -> None:
        """E and U (with `suffix`, `env`); `others`: items of another feed in the table."""
        rows = self.files.rows
        empty, full = self.imports("E" + suffix, "U" + suffix, how, env)
        await self.fresh()
        if others:
            say(f"seeding {others:,} items of another feed ...")
            await self.conn.execute(SEED_OTHERS, self.feeds["N"], others)
            await db.quiesce(self.conn)
        if not (await self.feed_worker_import(empty)).ok:
            note = "not run: E did not succeed"
            self.report.add(Measurement(full.label, full.what, rows, note=note, ok=False))
            return
        await db.quiesce(self.conn)
        await self.feed_worker_import(full)

    def imports(self, empty: str, full: str, how: str = "",
                env: tuple[tuple[str, str], ...] = ()) -> tuple[Import, Import]:
        """Feed E's imports: feed1.csv into an empty table, then feed2.csv (10% changed)."""
        rows, changed = self.files.rows, self.files.changed
        return (
            Import(empty, f"feed-worker import, empty table{how}", "E", "feed1.csv",
                   self.files.base, rows, f"inserted {rows}", env),
            Import(full, f"feed-worker import, full, 10% changed{how}", "E", "feed2.csv",
                   self.feed2, rows, f"updated {changed}, unchanged {rows - changed}", env),
        )

    async def rss_run(self) -> None:
        if self.rss_file is None:
            return
        rows, changed = self.rss_file.rows, self.rss_file.changed
        what = f"feed-worker import, {rows:,} rows, empty table"
        await self.fresh()
        await self.feed_worker_import(
            Import("R", what, "R", "feed-rss.csv", self.rss_file.base, rows, f"inserted {rows}")
        )
        if self.rss_file.updated is not None:  # the refresh of as many rows, 10% changed
            await self.feed_worker_import(Import(
                "RU", f"feed-worker import, {rows:,} rows, full, 10% changed", "R",
                "feed-rss2.csv", self.rss_file.updated, rows,
                f"updated {changed}, unchanged {rows - changed}"))

    # -- N and G: the naive peers ---------------------------------------------------------------

    async def naive(self) -> None:
        n, rows = self.opts.naive_rows, self.files.rows
        await self.fresh()
        say("running N ...")
        result = await peers.naive_upsert(self.conn, self.feeds["N"], self.files.base, n)
        scale = rows / result.rows
        what = f"asyncpg executemany upsert, {n:,} rows x{scale:g}"
        m = self.report.add(Measurement("N", what, rows, seconds=result.seconds * scale))
        count = await self.conn.fetchval(db.COUNT_ROWS, self.feeds["N"])
        m.ok = count == n
        m.note = f"measured {result.seconds:.2f} s, rows {count}" + ("" if m.ok else " MISMATCH")

    async def pgloader(self) -> None:
        rows = self.files.rows
        m = self.report.add(Measurement("G", "pgloader plain load, no keys (no upsert)", rows))
        binary = peers.pgloader_binary()
        if binary is None:
            say(f"pgloader is not installed: {peers.PGLOADER_INSTALL}; G is left out")
            m.note = f"not run: {peers.PGLOADER_INSTALL}"
            return
        await self.fresh()
        say("running G ...")
        log = self.logs / "G.log"
        result = await peers.pgloader_load(
            binary, self.url, self.files.base, self.opts.workdir, log
        )
        if not result.ok:
            self.failed(m, result)
            return
        m.seconds = result.seconds
        count = await db.count_plain(self.conn)
        m.ok = count == rows
        m.note = f"rows {count}" + ("" if m.ok else " MISMATCH")

    async def run_all(self) -> None:
        steps = {
            "L": lambda: self.psql_pair("L", "upsert.sql", "INSERT ON CONFLICT"),
            "M": lambda: self.psql_pair("M", "merge.sql", "MERGE"),
            "X": self.rules,
            "S": self.shared,
            "E": lambda: refresh.run(self),
            "V": self.value_rules,
            "N": self.naive,
            "G": self.pgloader,
            "R": self.rss_run,
        }
        for name in RUNS:
            if name not in self.opts.skip:
                await steps[name]()


SET_MAPPING = "UPDATE inventory_feeds SET mapping = $2::jsonb WHERE id = $1"
# V's rules: what the benchmark names (markup, rounding, a 3-column sum, GTINs).
VALUE_RULES = {"rules": {
    "price": {"markupPercent": 20, "rounding": ".99"},
    "quantity": {"sum": ["inventory_quantity", *feedgen.RULES_EXTRA]},
    "barcode": {"gtin": "reject"},
}}


def rules_sample(path: Path, rows: int) -> dict[str, db.Item]:
    """The items V should store, computed here from the file (not by the worker's code):
    prices x 1.2 up to the next .99, the three quantities summed."""
    sample = db.read_sample(path, rows)
    wanted = set(sample)
    totals: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if row[0] in wanted:
                totals[row[0]] = int(row[6]) + int(row[8]) + int(row[9])
    out: dict[str, db.Item] = {}
    for ext, (sku, barcode, name, price, compare, _, grams) in sample.items():
        if price is not None:
            price = math.ceil(price * Decimal("1.2") - Decimal("0.99")) + Decimal("0.99")
        out[ext] = (sku, barcode, name, price, compare, totals[ext], grams)
    return out


async def setup_database(opts: Options, database_url: str, feed_worker: str | None) -> bool:
    """Drop, create and migrate the benchmark database (`feed-worker migrate`)."""
    if opts.keep_db:
        return True
    if feed_worker is None:
        say("cannot migrate: no feed-worker in .venv/bin (run `.venv/bin/pip install -e .`)")
        return False
    await db.recreate_database(database_url, opts.db_name)
    env = {**os.environ, "DATABASE_URL": database_url}
    log = opts.workdir / "logs" / "migrate.log"
    result = await run_child_async([feed_worker, "migrate"], log=log, env=env)
    if not result.ok:
        say(f"`feed-worker migrate` failed (exit {result.returncode}):\n{result.tail()}")
    return result.ok


def generate(opts: Options) -> tuple[feedgen.FeedFiles, feedgen.FeedFiles | None]:
    start = time.perf_counter()
    files, made = feedgen.ensure_feed(
        opts.workdir, opts.rows, opts.seed, with_update=True, changed_share=CHANGED_SHARE
    )
    rss: feedgen.FeedFiles | None = None
    if opts.rss_rows and "R" not in opts.skip:
        rss, made_rss = feedgen.ensure_feed(
            opts.workdir, opts.rss_rows, opts.seed, with_update=True,
            changed_share=CHANGED_SHARE)
        made = made or made_rss
    state = "generated" if made else "reused"
    say(f"feeds {state} in {time.perf_counter() - start:.1f} s under {opts.workdir}")
    return files, rss


def generate_rules_file(opts: Options, files: feedgen.FeedFiles) -> Path | None:
    if "V" in opts.skip:
        return None
    start = time.perf_counter()
    path, made = feedgen.ensure_rules_feed(files.base)
    say(f"{path.name} {'generated' if made else 'reused'} in "
        f"{time.perf_counter() - start:.1f} s")
    return path


async def header(bench: Bench) -> list[str]:
    files = bench.files
    mib = files.base.stat().st_size / 2**20
    version = await bench.conn.fetchval("SHOW server_version")
    return [
        f"feed-worker pull benchmark: {files.rows:,} rows, feed1.csv {mib:.1f} MiB, "
        f"feed2.csv with {files.changed:,} rows changed",
        f"PostgreSQL {version}, database {bench.opts.db_name}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, files served from {bench.base_url}",
    ]


async def main(opts: Options) -> int:
    start = time.perf_counter()
    files, rss_file = generate(opts)
    feed_worker = feed_worker_binary()
    url = db.with_database(os.environ.get("DATABASE_URL", db.DEFAULT_DATABASE_URL), opts.db_name)
    if not await setup_database(opts, url, feed_worker):
        return 2
    served = {"feed1.csv": files.base, "feed2.csv": files.updated or files.base}
    if rss_file is not None:
        served["feed-rss.csv"] = rss_file.base
        served["feed-rss2.csv"] = rss_file.updated or rss_file.base
    rules_file = generate_rules_file(opts, files)
    if rules_file is not None:
        served["feed-rules.csv"] = rules_file
    conn = await asyncpg.connect(url)
    try:
        bench = Bench(opts, url, conn, files, rss_file, feed_worker, rules_file)
        async with serve_files(served) as base_url:
            bench.base_url = base_url
            bench.feeds = await db.prepare(conn, f"{bench.base_url}/feed1.csv", list(FEEDS))
            bench.report.header = await header(bench)
            await bench.run_all()
    finally:
        await conn.close()
    targets = (*TARGETS[:2], *refresh.TARGETS, *TARGETS[2:])
    say(bench.report.render(("E", "R"), ("U", "RU"), targets=targets))
    say(f"\nbenchmark took {time.perf_counter() - start:.0f} s; logs in {opts.workdir / 'logs'}")
    if failed := bench.report.failed:
        labels = ", ".join(m.label for m in failed)
        say(f"failed or wrong: {labels}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
