"""Pull benchmark of XML and JSON feeds: `feed-worker import` against the parser alone + psql.

Run from the repository root: `.venv/bin/python -m tests.bench.pull_formats [--quick]`.
Not a pass/fail test: it prints times, ratios and their targets. It exits 1 only when a run
failed or loaded the wrong data, 2 when the benchmark could not be set up.

The items are the CSV benchmark's (feed1.csv, same rows and seed) written as XML and JSON
(tests/bench/formatgen.py), plain and gzip'd, served over HTTP on loopback. In one run:

  L-psql-xml  psql: \\copy of feed1.csv into a typed temp table + INSERT ... ON CONFLICT (the
              CSV benchmark's L, sql/upsert.sql), empty table; timed again as L-psql-json
              beside the JSON runs (one load to the next varies by 10-30% on a small VM)
  P-xml       lxml iterparse alone over feed1.xml on disk, each record cleared (parse_alone.py)
  P-json      ijson.items alone over feed1.json on disk, prefix data.items.item
  L-xml       P-xml + L-psql-xml: the parser alone, then the database work done by hand
  L-json      P-json + L-psql-json
  E-xml       feed-worker import of feed1.xml over HTTP, empty table (E-xml-gz: feed1.xml.gz)
  E-json      feed-worker import of feed1.json over HTTP, empty table (E-json-gz: .json.gz)
  R-xml       feed-worker import of the --rss-rows (3M) XML file: peak RSS against E-xml's
  R-json      the same for JSON

Order: per format, its L then its E runs; the R runs last.
Targets: every E <= 1.3 x its format's L; peak RSS of every plain import <= 150 MiB, and
R's within 25% of E's (flat from 1M to 3M items). After each import the table must hold
exactly the file's rows, a sample of them column by column as in feed1.csv, and its
feed_runs row must show the bytes of the file served (gzip'd runs: inflated by the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.bench import db, feedgen, formatgen, peers, procstat
from tests.bench.children import ChildResult, run_child_async
from tests.bench.httpserver import serve_files
from tests.bench.pull_csv import feed_worker_binary, say
from tests.bench.report import Measurement, Report, Target, format_run

PARSE_ALONE = Path(__file__).with_name("parse_alone.py")
RATIO_LIMIT = 1.3
BUSY_LIMIT = 0.10  # other processes' CPU, as a share of one core, that makes a run suspect
WARM_CHUNK = 1 << 20
_RECORDS = re.compile(r"^records (\d+) backend (.+)$", re.MULTILINE)

CREATE_FEED = """
INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type, resource_location,
                             mapping)
VALUES ($1, $2, $3, $4, $5::jsonb)
RETURNING id
"""
PROVIDER_OF = "SELECT dropship_provider_id FROM inventory_feeds WHERE id = $1"
WAL_LSN = "SELECT pg_current_wal_lsn()::text"
WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint"


@dataclass(frozen=True)
class Format:
    name: str  # xml, json: the feed's resource_type
    title: str
    parser: str  # what P-<name> runs
    where: str  # parse_alone's TAG or PREFIX
    mapping: dict[str, Any]


FORMATS = (
    Format("xml", "XML", "lxml iterparse", formatgen.XML_TAG, formatgen.XML_MAPPING),
    Format("json", "JSON", "ijson.items", formatgen.JSON_PREFIX, formatgen.JSON_MAPPING),
)
TARGETS = tuple(
    Target(
        f"E-{f.name}{gz}/L-{f.name}",
        f"{f.title}{' gzip' if gz else ''} import vs {f.parser} alone + psql",
        f"E-{f.name}{gz}",
        f"L-{f.name}",
        RATIO_LIMIT,
    )
    for f in FORMATS
    for gz in ("", "-gz")
)
RSS_PAIRS = tuple((f"E-{f.name}", f"R-{f.name}") for f in FORMATS)


@dataclass(frozen=True)
class Options:
    rows: int
    rss_rows: int
    seed: int
    workdir: Path
    db_name: str
    keep_db: bool


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.pull_formats",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rows", type=int, help="items of the XML and JSON feeds (default 1000000)")
    add("--rss-rows", type=int, help="items of the RSS runs R, 0 leaves them out (default 3000000)")
    add("--quick", action="store_true", help="smoke run: 100000 items, 300000 in the RSS runs")
    add("--seed", type=int, default=42, help="seed of the generated feeds (feedgen's)")
    add("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "feed-worker-bench")
    add("--db-name", default="feed_worker_formats_bench", help="dropped and created at the start")
    add("--keep-db", action="store_true", help="use the database as it is: no drop or migrate")
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    rss_rows = args.rss_rows
    if rss_rows is None:
        rss_rows = 3 * rows if args.quick else 3_000_000
    return Options(
        rows=rows,
        rss_rows=rss_rows,
        seed=args.seed,
        workdir=args.workdir,
        db_name=args.db_name,
        keep_db=args.keep_db,
    )


@dataclass(frozen=True)
class Load:
    """What else happened while a run was timed: WAL written, other processes' CPU."""

    label: str
    seconds: float
    wal_bytes: int  # the whole cluster's
    others: dict[str, float]  # who -> CPU seconds


@dataclass(frozen=True)
class Import:
    """One `feed-worker import`: which served file into which feed, and what it must show."""

    label: str
    what: str
    fmt: Format
    served_as: str
    path: Path  # the file served
    csv: Path  # the same items as CSV, for the sample
    rows: int
    compression: str  # what feed_runs.details must say: gzip or none


@dataclass
class Bench:
    """One benchmark run: the database, the served files, and what was measured."""

    opts: Options
    url: str
    conn: asyncpg.Connection
    files: formatgen.FormatFiles
    rss_files: formatgen.FormatFiles | None
    feed_worker: str
    base_url: str = ""
    feeds: dict[str, int] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    samples: dict[Path, dict[str, db.Item]] = field(default_factory=dict)
    timings: list[tuple[str, float, dict[str, float]]] = field(default_factory=list)
    parsers: dict[str, str] = field(default_factory=dict)  # format -> parser and version
    load: list[Load] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.opts.workdir / "logs" / "formats"

    def sample(self, path: Path, rows: int) -> dict[str, db.Item]:
        if path not in self.samples:
            self.samples[path] = db.read_sample(path, rows)
        return self.samples[path]

    def others(self) -> procstat.Snapshot:
        return procstat.snapshot_others(self.opts.db_name, frozenset({os.getpid()}))

    async def before(self) -> tuple[procstat.Snapshot, str]:
        return self.others(), await self.conn.fetchval(WAL_LSN)

    async def after(
        self, label: str, before: tuple[procstat.Snapshot, str], result: ChildResult
    ) -> None:
        """What other processes used of the CPUs while `label` ran, and the WAL written."""
        used = procstat.used(before[0], self.others())
        wal = int(await self.conn.fetchval(WAL_SINCE, before[1]))
        busy = {k: v for k, v in used.items() if v > 0}
        self.load.append(Load(label, result.seconds, wal, busy))

    async def fresh(self) -> None:
        await db.reset(self.conn)
        await db.quiesce(self.conn)

    async def check(self, m: Measurement, feed: str, csv_path: Path, rows: int) -> None:
        sample = await asyncio.to_thread(self.sample, csv_path, rows)
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

    # -- L: the parser alone, and psql ----------------------------------------------------------

    async def psql(self, fmt: Format) -> Measurement:
        """The psql half of L, timed again beside each format's imports (it varies by 10-30%
        from one load to the next on a small VM, with the checkpoints and the disk)."""
        rows = self.files.rows
        label = f"L-psql-{fmt.name}"
        what = "psql \\copy feed1.csv + INSERT ON CONFLICT, empty"
        m = self.report.add(Measurement(label, what, rows))
        await self.fresh()
        say(f"running {label} ...")
        log = self.logs / f"{label}.log"
        before = await self.before()
        result, written = await peers.psql_load(
            "upsert.sql", self.url, self.feeds["L"], self.files.csv, log
        )
        await self.after(label, before, result)
        if not result.ok:
            self.failed(m, result)
            return m
        m.seconds = result.seconds
        m.ok = written == rows
        m.note = f"wrote {written}" + ("" if m.ok else " MISMATCH")
        await self.check(m, "L", self.files.csv, rows)
        return m

    async def parse_alone(self, fmt: Format) -> Measurement:
        rows = self.files.rows
        path = self.files.xml if fmt.name == "xml" else self.files.json
        label = f"P-{fmt.name}"
        what = f"{fmt.parser} alone, {path.name} from disk"
        m = self.report.add(Measurement(label, what, rows))
        say(f"running {label} ...")
        argv = [sys.executable, "-I", str(PARSE_ALONE), fmt.name, str(path), fmt.where]
        before = await self.before()
        result = await run_child_async(argv, log=self.logs / f"{label}.log")
        await self.after(label, before, result)
        if not result.ok:
            self.failed(m, result)
            return m
        m.seconds, m.rss_mib = result.seconds, result.max_rss_mib
        found = _RECORDS.search(result.output())
        records = int(found.group(1)) if found else None
        if found:
            self.parsers[fmt.name] = found.group(2)
        m.ok = records == rows
        m.note = f"records {records}" + ("" if m.ok else " MISMATCH")
        return m

    def lower_bound(self, fmt: Format, parse: Measurement, psql: Measurement) -> None:
        label = f"L-{fmt.name}"
        what = f"{parse.label} + {psql.label} ({fmt.parser} + psql)"
        m = self.report.add(Measurement(label, what, self.files.rows))
        if parse.seconds is None or psql.seconds is None:
            m.ok, m.note = False, "not measured: its P or L-psql failed"
            return
        m.seconds = parse.seconds + psql.seconds
        m.note = f"{parse.seconds:.2f} + {psql.seconds:.2f}"

    # -- E and R: feed-worker import ------------------------------------------------------------

    async def feed_worker_import(self, run: Import) -> Measurement:
        m = self.report.add(Measurement(run.label, run.what, run.rows))
        say(f"running {run.label} ...")
        await self.fresh()
        feed_id = self.feeds[run.fmt.name]
        url = f"{self.base_url}/{run.served_as}"
        argv = [self.feed_worker, "import", "--feed", str(feed_id), "--url", url]
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32",  # the loopback server
        }
        before = await self.before()
        result = await run_child_async(argv, log=self.logs / f"{run.label}.log", env=env)
        await self.after(run.label, before, result)
        feed_run = await db.last_run(self.conn, feed_id)
        self.report.runs.append(format_run(run.label, feed_run, f"inserted {run.rows}"))
        if not result.ok:
            self.failed(m, result)
            return m
        m.seconds, m.rss_mib = result.seconds, result.max_rss_mib
        if feed_run is not None:
            self.timings.append((run.label, result.seconds, _json(feed_run["timings"])))
            m.note = _served(feed_run, run)
            m.ok = not m.note.endswith("MISMATCH")
        await self.check(m, run.fmt.name, run.csv, run.rows)
        return m

    def imports(self, fmt: Format) -> list[Import]:
        files, rows = self.files, self.files.rows
        plain = files.xml if fmt.name == "xml" else files.json
        packed = files.xml_gz if fmt.name == "xml" else files.json_gz
        assert packed is not None
        runs = [
            Import(
                f"E-{fmt.name}",
                f"feed-worker import, {fmt.title} over HTTP, empty table",
                fmt,
                plain.name,
                plain,
                files.csv,
                rows,
                "none",
            ),
            Import(
                f"E-{fmt.name}-gz",
                f"feed-worker import, {fmt.title} gzip'd over HTTP, empty",
                fmt,
                packed.name,
                packed,
                files.csv,
                rows,
                "gzip",
            ),
        ]
        if self.rss_files is not None:
            big = self.rss_files
            path = big.xml if fmt.name == "xml" else big.json
            runs.append(
                Import(
                    f"R-{fmt.name}",
                    f"feed-worker import, {fmt.title}, {big.rows:,} rows, empty",
                    fmt,
                    f"rss-{path.name}",
                    path,
                    big.csv,
                    big.rows,
                    "none",
                )
            )
        return runs

    async def run_all(self) -> None:
        """Per format: its L (psql, then the parser alone) and right after it its imports;
        the RSS runs last."""
        rss_runs: list[Import] = []
        for fmt in FORMATS:
            psql = await self.psql(fmt)
            self.lower_bound(fmt, await self.parse_alone(fmt), psql)
            for run in self.imports(fmt):
                if run.label.startswith("R-"):
                    rss_runs.append(run)
                else:
                    await self.feed_worker_import(run)
        for run in rss_runs:
            await self.feed_worker_import(run)

    def served(self) -> dict[str, Path]:
        files = self.files
        served = {p.name: p for p in (files.xml, files.json, files.xml_gz, files.json_gz) if p}
        if self.rss_files is not None:
            served |= {f"rss-{p.name}": p for p in (self.rss_files.xml, self.rss_files.json)}
        return served

    def other_processes(self) -> list[str]:
        """WAL written and CPU taken by other processes during each run: this box is shared."""
        out = [
            "",
            "during the runs: WAL written (the cluster's), and CPU of other processes (a lower",
            "bound: processes that start and end within a run are not seen; 100% = one core)",
        ]
        busy = []
        for load in self.load:
            total, wall = sum(load.others.values()), load.seconds
            top = procstat.describe(
                dict(sorted(load.others.items(), key=lambda kv: -kv[1])[:3]), wall
            )
            out.append(
                f"  {load.label:<11} WAL {load.wal_bytes / 2**20:6.0f} MiB   others "
                f"{total:6.2f} CPU-s ({100 * total / wall:3.0f}%)  {top}"
            )
            if total > BUSY_LIMIT * wall:
                busy.append(load.label)
        if busy:
            out.append(
                f"  WARNING: other work took over {BUSY_LIMIT:.0%} of a core during "
                f"{', '.join(busy)}: those times are skewed; re-run on a quiet machine"
            )
        return out

    def where_the_time_went(self) -> list[str]:
        """feed_runs.timings of each import, beside its wall time."""
        if not self.timings:
            return []
        keys = ("total_s", "stream_s", "parse_s", "source_wait_s", "copy_wait_s", "merge_s")
        heads = ("run total", "stream", "parse", "src wait", "copy wait", "merge")
        out = [
            "",
            "where the time went (seconds). wall: the import process, timed by the benchmark;",
            "the rest from feed_runs.timings. stream: download + parse + map + COPY, overlapped;",
            "parse: the parser's and mapper's time inside it; outside: start-up, claim, exit.",
            f"{'run':<10} {'wall':>7} " + " ".join(f"{h:>9}" for h in heads) + f" {'outside':>9}",
        ]
        for label, wall, t in self.timings:
            cells = " ".join(f"{t[k]:9.2f}" if k in t else f"{'-':>9}" for k in keys)
            outside = f"{wall - t['total_s']:9.2f}" if "total_s" in t else f"{'-':>9}"
            out.append(f"{label:<10} {wall:7.2f} {cells} {outside}")
        return out


def _precompressed(paths: list[Path]) -> list[Path]:
    """Served files with a `.gz` or `.br` sibling: aiohttp's FileResponse would send that
    instead (Content-Encoding), which the worker's HTTP client inflates unseen."""
    return [p for p in paths if any(p.with_name(p.name + ext).exists() for ext in (".gz", ".br"))]


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        loaded: dict[str, Any] = json.loads(value)
        return loaded
    return dict(value or {})


def _served(feed_run: asyncpg.Record, run: Import) -> str:
    """Whether the run read the file as served: its size, and the compression found."""
    size = run.path.stat().st_size
    compression = _json(feed_run["details"]).get("compression")
    ok = feed_run["bytes"] == size and compression == run.compression
    note = f"{compression}, {feed_run['bytes']:,} bytes" if feed_run["bytes"] is not None else ""
    if not ok:
        note += f" (expected {run.compression}, {size:,} bytes) MISMATCH"
    return note


async def create_feeds(conn: asyncpg.Connection, base_url: str) -> dict[str, int]:
    """The CSV feed L (psql's) and one feed per format, with the README's mappings."""
    feeds = await db.prepare(conn, f"{base_url}/feed1.csv", ["L"])
    provider = await conn.fetchval(PROVIDER_OF, feeds["L"])
    for fmt in FORMATS:
        location = f"{base_url}/feed1.{fmt.name}"
        feeds[fmt.name] = await conn.fetchval(
            CREATE_FEED, provider, f"bench {fmt.name}", fmt.name, location, json.dumps(fmt.mapping)
        )
    return feeds


async def setup_database(opts: Options, database_url: str, feed_worker: str) -> bool:
    """Drop, create and migrate the benchmark database (`feed-worker migrate`)."""
    if opts.keep_db:
        return True
    await db.recreate_database(database_url, opts.db_name)
    env = {**os.environ, "DATABASE_URL": database_url}
    log = opts.workdir / "logs" / "formats" / "migrate.log"
    result = await run_child_async([feed_worker, "migrate"], log=log, env=env)
    if not result.ok:
        say(f"`feed-worker migrate` failed (exit {result.returncode}):\n{result.tail()}")
    return result.ok


def generate(opts: Options) -> tuple[formatgen.FormatFiles, formatgen.FormatFiles | None]:
    start = time.perf_counter()
    made = False

    def formats(rows: int, gzipped: bool) -> formatgen.FormatFiles:
        nonlocal made
        csv_files, made_csv = feedgen.ensure_feed(
            opts.workdir, rows, opts.seed, with_update=False, changed_share=0
        )
        files, made_formats = formatgen.ensure_formats(csv_files, opts.seed, gzipped=gzipped)
        made = made or made_csv or made_formats
        return files

    files = formats(opts.rows, gzipped=True)
    rss = formats(opts.rss_rows, gzipped=False) if opts.rss_rows else None
    state = "generated" if made else "reused"
    say(f"feeds {state} in {time.perf_counter() - start:.1f} s under {opts.workdir}")
    return files, rss


def warm(paths: list[Path]) -> float:
    """Read the files once, so every run finds them in the page cache."""
    start = time.perf_counter()
    for path in paths:
        with path.open("rb") as f:
            while f.read(WARM_CHUNK):
                pass
    return time.perf_counter() - start


async def header(bench: Bench) -> list[str]:
    files = bench.files

    def mib(path: Path | None) -> str:
        return f"{path.stat().st_size / 2**20:.1f} MiB" if path is not None else "-"

    version = await bench.conn.fetchval("SHOW server_version")
    lines = [
        f"feed-worker XML/JSON pull benchmark: {files.rows:,} items (feed1.csv's, seed "
        f"{bench.opts.seed}): feed1.xml {mib(files.xml)} (gzip'd {mib(files.xml_gz)}), "
        f"feed1.json {mib(files.json)} (gzip'd {mib(files.json_gz)}), feed1.csv {mib(files.csv)}",
    ]
    if bench.rss_files is not None:
        big = bench.rss_files
        lines.append(
            f"RSS runs: {big.rows:,} items, XML {mib(big.xml)}, JSON {mib(big.json)}, plain"
        )
    parsers = ", ".join(bench.parsers.values()) or "-"
    lines.append(
        f"PostgreSQL {version}, database {bench.opts.db_name}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {parsers}, files served from {bench.base_url}"
    )
    return lines


async def main(opts: Options) -> int:
    start = time.perf_counter()
    feed_worker = feed_worker_binary()
    if feed_worker is None:
        say("no feed-worker in .venv/bin: run `.venv/bin/pip install -e .`")
        return 2
    try:
        files, rss_files = await asyncio.to_thread(generate, opts)
    except (OSError, ValueError) as exc:
        say(f"could not generate the feeds: {exc}")
        return 2
    url = db.with_database(os.environ.get("DATABASE_URL", db.DEFAULT_DATABASE_URL), opts.db_name)
    try:
        if not await setup_database(opts, url, feed_worker):
            return 2
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        say(f"cannot set up database {opts.db_name}: {exc}")
        return 2
    bench = Bench(opts, url, conn, files, rss_files, feed_worker)
    started = False
    try:
        served = bench.served()
        if swapped := _precompressed(list(served.values())):
            say(f"cannot serve {swapped[0]} as it is: a precompressed sibling is beside it")
            return 2
        took = await asyncio.to_thread(warm, [*served.values(), files.csv])
        say(f"files read once in {took:.1f} s (page cache)")
        async with serve_files(served) as base_url:
            bench.base_url = base_url
            bench.feeds = await create_feeds(conn, base_url)
            started = True
            await bench.run_all()
            bench.report.header = await header(bench)
    except (OSError, RuntimeError, aiohttp.ClientError, asyncpg.PostgresError) as exc:
        if started:
            raise
        say(f"could not set up the runs: {type(exc).__name__}: {exc}")
        return 2
    finally:
        await conn.close()
    say(bench.report.render(*RSS_PAIRS, targets=TARGETS))
    say("\n".join(bench.where_the_time_went()))
    say("\n".join(bench.other_processes()))
    say(f"\nbenchmark took {time.perf_counter() - start:.0f} s; logs in {bench.logs}")
    if failed := bench.report.failed:
        labels = ", ".join(m.label for m in failed)
        say(f"failed or wrong: {labels}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
