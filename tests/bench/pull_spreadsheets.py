"""Pull benchmark of a spreadsheet feed: `feed-worker import` of a 1M-row XLSX against the
reader alone + psql.

Run from the repository root: `.venv/bin/python -m tests.bench.pull_spreadsheets [--quick]`.
Not a pass/fail test: it prints times, ratios and their targets. It exits 1 only when a run
failed or loaded the wrong data, 2 when the benchmark could not be set up.

The items are the CSV benchmark's (feed1.csv, same rows and seed) written as an XLSX
workbook as Excel writes one (tests/bench/xlsxgen.py: texts in the shared-strings table,
barcodes, prices and quantities as numbers), served over HTTP on loopback. In one run:

  L-psql-xlsx  psql: \\copy of feed1.csv into a typed temp table + INSERT ... ON CONFLICT
               (the CSV benchmark's L, sql/upsert.sql), empty table
  P-xlsx       the worker's spreadsheet parser alone over feed1.xlsx on disk: the file
               spooled, the sheet streamed into rows of texts (sheet_alone.py `worker`)
  C-xlsx       python-calamine alone over the same file: the sheet loaded and every row
               built as Python values (the reader XLSX was read with before it was
               streamed; XLS and XLSB still are), for reference
  O-xlsx       openpyxl's read-only mode alone over the same file (for reference;
               `--no-openpyxl` leaves it out: it takes minutes)
  L-xlsx       P-xlsx + L-psql-xlsx: the reader alone, then the database work done by hand
  E-xlsx       feed-worker import of feed1.xlsx over HTTP (a `spreadsheet` feed), empty
               table: download to a temporary file, read, map, COPY, merge

Targets: E-xlsx <= 1.3 x L-xlsx. Peak RSS of each run is printed: the streamed reader's
is flat in the rows (run `--rows 100000` and the default 1M to compare), calamine's about
ten times the file. After the import the table must hold exactly the file's rows, a
sample of them column by column as in feed1.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.bench import db, feedgen, formatgen, xlsxgen
from tests.bench.children import run_child_async
from tests.bench.httpserver import serve_files
from tests.bench.pull_csv import feed_worker_binary, say
from tests.bench.pull_formats import (
    CREATE_FEED,
    PROVIDER_OF,
    RATIO_LIMIT,
    Bench,
    Format,
    Import,
    Options,
    setup_database,
    warm,
)
from tests.bench.report import Measurement, Target

SHEET_ALONE = Path(__file__).with_name("sheet_alone.py")
# The feed's key in the Bench (its runs' labels: L-psql-xlsx, L-xlsx); a `spreadsheet` feed.
FORMAT = Format("xlsx", "XLSX", "the worker's XLSX stream", xlsxgen.SHEET, xlsxgen.MAPPING)
TARGETS = (
    Target("E-xlsx/L-xlsx", "XLSX import vs the streamed reader alone + psql", "E-xlsx",
           "L-xlsx", RATIO_LIMIT),
    Target("P-xlsx/C-xlsx", "the streamed reader alone vs python-calamine alone", "P-xlsx",
           "C-xlsx", None),
    Target("O-xlsx/C-xlsx", "openpyxl read-only alone vs python-calamine alone", "O-xlsx",
           "C-xlsx", None),
)


def parse_args(argv: list[str] | None = None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.pull_spreadsheets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rows", type=int, help="items of the XLSX feed (default 1000000)")
    add("--quick", action="store_true", help="smoke run: 100000 items")
    add("--no-openpyxl", action="store_true", help="leave out O-xlsx (openpyxl alone)")
    add("--seed", type=int, default=42, help="seed of the generated feed (feedgen's)")
    add("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "feed-worker-bench")
    add("--db-name", default="feed_worker_sheets_bench", help="dropped and created at the start")
    add("--keep-db", action="store_true", help="use the database as it is: no drop or migrate")
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    opts = Options(rows=rows, rss_rows=0, seed=args.seed, workdir=args.workdir,
                   db_name=args.db_name, keep_db=args.keep_db)
    return opts, not args.no_openpyxl


class SheetBench(Bench):
    """pull_formats' Bench, for one XLSX feed."""

    @property
    def logs(self) -> Path:
        return self.opts.workdir / "logs" / "spreadsheets"

    async def read_alone(self, reader: str, label: str, what: str) -> Measurement:
        path = self.files.xml  # the XLSX file (see generate)
        m = self.report.add(Measurement(label, what, self.files.rows))
        say(f"running {label} ...")
        argv = [sys.executable, "-I", str(SHEET_ALONE), reader, str(path), xlsxgen.SHEET]
        before = await self.before()
        result = await run_child_async(argv, log=self.logs / f"{label}.log")
        await self.after(label, before, result)
        if not result.ok:
            self.failed(m, result)
            return m
        m.seconds, m.rss_mib = result.seconds, result.max_rss_mib
        found = result.output().strip().splitlines()[-1:] or [""]
        m.ok = found[0].startswith(f"records {self.files.rows} ")
        m.note = found[0] + ("" if m.ok else " MISMATCH")
        return m

    async def run_sheets(self, openpyxl: bool) -> None:
        psql = await self.psql(FORMAT)
        parse = await self.read_alone("worker", "P-xlsx", "the worker's parser alone, "
                                      "feed1.xlsx from disk")
        self.lower_bound(FORMAT, parse, psql)
        await self.read_alone("calamine", "C-xlsx", "python-calamine alone, feed1.xlsx "
                              "from disk")
        xlsx = self.files.xml
        await self.feed_worker_import(Import(
            "E-xlsx", "feed-worker import, XLSX over HTTP, empty table", FORMAT, xlsx.name,
            xlsx, self.files.csv, self.files.rows, "none"))
        if openpyxl:
            await self.read_alone("openpyxl", "O-xlsx", "openpyxl read-only alone, "
                                  "feed1.xlsx from disk")


def generate(opts: Options) -> formatgen.FormatFiles:
    """feed1.csv and feed1.xlsx; the XLSX stands in FormatFiles' `xml` place (the Bench
    reads `csv` and `rows` only, and the runs' own paths)."""
    start = time.perf_counter()
    csv_files, made_csv = feedgen.ensure_feed(opts.workdir, opts.rows, opts.seed,
                                              with_update=False, changed_share=0)
    xlsx, made = xlsxgen.ensure_xlsx(csv_files, opts.seed)
    state = "generated" if made or made_csv else "reused"
    say(f"feeds {state} in {time.perf_counter() - start:.1f} s under {opts.workdir}")
    return formatgen.FormatFiles(csv_files.base, xlsx, xlsx, None, None, csv_files.rows)


async def main(opts: Options, openpyxl: bool) -> int:
    start = time.perf_counter()
    feed_worker = feed_worker_binary()
    if feed_worker is None:
        say("no feed-worker in .venv/bin: run `.venv/bin/pip install -e .`")
        return 2
    try:
        files = await asyncio.to_thread(generate, opts)
    except (OSError, ValueError) as exc:
        say(f"could not generate the feed: {exc}")
        return 2
    url = db.with_database(os.environ.get("DATABASE_URL", db.DEFAULT_DATABASE_URL), opts.db_name)
    try:
        if not await setup_database(opts, url, feed_worker):
            return 2
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        say(f"cannot set up database {opts.db_name}: {exc}")
        return 2
    bench = SheetBench(opts, url, conn, files, None, feed_worker)
    try:
        served = {files.xml.name: files.xml}
        took = await asyncio.to_thread(warm, [files.xml, files.csv])
        say(f"files read once in {took:.1f} s (page cache)")
        async with serve_files(served) as base_url:
            bench.base_url = base_url
            bench.feeds = await db.prepare(conn, f"{base_url}/feed1.csv", ["L"])
            provider = await conn.fetchval(PROVIDER_OF, bench.feeds["L"])
            bench.feeds[FORMAT.name] = await conn.fetchval(
                CREATE_FEED, provider, "bench xlsx", "spreadsheet", f"{base_url}/feed1.xlsx",
                json.dumps(FORMAT.mapping))
            await bench.run_sheets(openpyxl)
            bench.report.header = [
                f"feed-worker XLSX pull benchmark: {files.rows:,} items (feed1.csv's, seed "
                f"{opts.seed}): feed1.xlsx {files.xml.stat().st_size / 2**20:.1f} MiB, "
                f"feed1.csv {files.csv.stat().st_size / 2**20:.1f} MiB; {os.cpu_count()} "
                f"CPUs; served from {base_url}"]
    finally:
        await conn.close()
    say(bench.report.render(targets=TARGETS))
    say("\n".join(bench.where_the_time_went()))
    say("\n".join(bench.other_processes()))
    say(f"\nbenchmark took {time.perf_counter() - start:.0f} s; logs in {bench.logs}")
    if failed := bench.report.failed:
        say(f"failed or wrong: {', '.join(m.label for m in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*parse_args())))
