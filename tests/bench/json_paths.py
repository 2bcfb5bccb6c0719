"""JSON parsing benchmark: the fast path (msgspec) against ijson's, and each parser alone.

Run from the repository root: `.venv/bin/python -m tests.bench.json_paths [--quick]`.
Not a pass/fail test: it prints CPU seconds, peak RSS and ratios. It exits 1 only when a
run failed or read the wrong number of records or rows, 2 when it could not be set up.

Two files of the same --rows records (default 1,000,000, about 330 MB each), generated
once under --workdir and reused: feed.json, a top-level array, and feed.ndjson, one record
a line. A record: {"id", "sku", "barcode" (13 digits, or null), "name" (escapes, quotes,
non-ASCII), "price" (a decimal), "compare" (a decimal or null), "stock": {"available",
"warehouse"}, "grams", "tags": [...], "url", "updated"}. Each run is a child process
(json_alone.py) reading the file in 1 MiB chunks from the page cache:

  old-F      JsonRecords with ijson reading everything (the path before msgspec), rows
  new-F      JsonRecords as a pull runs it (the fast path), rows
  ijson-F    ijson.items alone, records built and dropped
  msgspec-F  the fast path's parsing alone (runs cut and decoded), records built and dropped

for F = json and ndjson. CPU is the child's own (time.process_time around the parse);
peak RSS its maximum resident set (measure_child.py). The issue's prototype measured, for
1M records (334 MB): 6.3 s -> 3.5 s CPU (array), 5.7 s -> 2.7 s (NDJSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.children import run_child
from tests.bench.pull_csv import say

CHILD = Path(__file__).with_name("json_alone.py")
FILE_VERSION = 1
MODES = ("old", "new", "ijson", "msgspec")
_RESULT = re.compile(r"records (\d+) rows (\d+) errors (\d+) cpu ([\d.]+) fast (\w+)")
_WORDS = ["Garden", "hose", "25 m", "Caf\u00e9", '"noir"', "drill, cordless", "M8\\bolt",
          "Stahl", "blau", "x", "\u00e9t\u00e9", "[set]", "{kit}"]


@dataclass
class Run:
    label: str
    what: str
    records: int = 0
    cpu: float | None = None
    wall: float | None = None
    rss_mib: float | None = None
    note: str = ""
    ok: bool = True


def _record(rnd: random.Random, k: int) -> str:
    name = json.dumps(" ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(2, 6))),
                      ensure_ascii=rnd.random() < 0.3)
    barcode = f'"{rnd.randrange(10**12, 10**13)}"' if rnd.random() < 0.8 else "null"
    compare = f"{rnd.randrange(100, 100000) / 100:.2f}" if rnd.random() < 0.3 else "null"
    tags = json.dumps(["new", "sale", "outlet"][:rnd.randint(0, 3)])
    return (f'{{"id": "A-{k:08d}", "sku": "SKU{rnd.randrange(10**9):09d}", '
            f'"barcode": {barcode}, "name": {name}, '
            f'"price": {rnd.randrange(100, 100000) / 100:.2f}, "compare": {compare}, '
            f'"stock": {{"available": {rnd.randrange(500)}, "warehouse": "main"}}, '
            f'"grams": {rnd.randrange(1, 5000)}, "tags": {tags}, '
            f'"url": "https:\\/\\/shop.example\\/p\\/{k}?ref=feed&lang=de", '
            f'"updated": "2026-05-04T10:15:00Z"}}')


def ensure_files(workdir: Path, rows: int, seed: int) -> tuple[Path, Path, bool]:
    """feed.json and feed.ndjson of `rows` records, unless those on disk are current."""
    workdir.mkdir(parents=True, exist_ok=True)
    array, lines = workdir / "feed.json", workdir / "feed.ndjson"
    meta = workdir / "feeds.meta.json"
    want = {"version": FILE_VERSION, "rows": rows, "seed": seed}
    if (meta.exists() and array.exists() and lines.exists()
            and json.loads(meta.read_text()) == want):
        return array, lines, False
    rnd = random.Random(seed)
    tmp_array, tmp_lines = (p.with_name(p.name + ".tmp") for p in (array, lines))
    with tmp_array.open("w", encoding="utf-8") as fa, tmp_lines.open("w", encoding="utf-8") as fl:
        fa.write("[\n")
        for start in range(0, rows, 10_000):
            block = [_record(rnd, k) for k in range(start, min(start + 10_000, rows))]
            fa.write(("" if start == 0 else ",\n") + ",\n".join(block))
            fl.write("\n".join(block) + "\n")
        fa.write("\n]\n")
    tmp_array.replace(array)
    tmp_lines.replace(lines)
    meta.write_text(json.dumps(want))
    return array, lines, True


def measure(mode: str, path: Path, rows: int, logs: Path) -> Run:
    fmt = "ndjson" if path.suffix == ".ndjson" else "json"
    label = f"{mode}-{fmt}"
    what = {"old": "JsonRecords, ijson only (before), rows",
            "new": "JsonRecords, fast path (msgspec), rows",
            "ijson": "ijson.items alone",
            "msgspec": "fast path's parsing alone (msgspec)"}[mode]
    run = Run(label, f"{what}, {path.name}")
    say(f"running {label} ...")
    result = run_child([sys.executable, "-I", str(CHILD), mode, str(path)],
                       log=logs / f"{label}.log")
    if not result.ok:
        run.ok, run.note = False, f"FAILED (exit {result.returncode}), log {result.log}"
        return run
    found = _RESULT.search(result.output())
    if found is None:
        run.ok, run.note = False, f"no result line, log {result.log}"
        return run
    records, got_rows, errors, cpu, fast = found.groups()
    run.records, run.cpu = int(records), float(cpu)
    run.wall, run.rss_mib = result.seconds, result.max_rss_mib
    run.ok = run.records == rows and int(got_rows) == rows and int(errors) == 0
    if mode == "new" and fast != "True":
        run.ok = False
        run.note = "handed to ijson "
    run.note += f"records {records}, rows {got_rows}" + ("" if run.ok else " MISMATCH")
    return run


def render(runs: dict[str, Run], header: list[str]) -> str:
    out = ["", *header, ""]
    out.append(f"{'run':<14} {'what':<56} {'CPU s':>7} {'wall s':>7} {'rec/s':>10} "
               f"{'peak RSS':>9}  check")
    for r in runs.values():
        cpu = f"{r.cpu:7.2f}" if r.cpu is not None else f"{'-':>7}"
        wall = f"{r.wall:7.2f}" if r.wall is not None else f"{'-':>7}"
        rate = f"{r.records / r.cpu:10,.0f}" if r.cpu else f"{'-':>10}"
        rss = f"{r.rss_mib:5.0f} MiB" if r.rss_mib is not None else f"{'':>9}"
        out.append(f"{r.label:<14} {r.what:<56} {cpu} {wall} {rate} {rss}  {r.note}")
    out += ["", f"{'ratio (CPU)':<22} {'meaning':<52} {'value':>6}  reference"]
    for fmt, prototype in (("json", "6.3 -> 3.5 s: 0.56"), ("ndjson", "5.7 -> 2.7 s: 0.47")):
        for num, den, meaning, ref in (
            ("new", "old", "fast path vs ijson, rows built", f"prototype {prototype}"),
            ("new", "msgspec", "fast path with rows vs its parsing alone", ""),
            ("old", "ijson", "ijson path with rows vs ijson alone", ""),
            ("msgspec", "ijson", "msgspec parsing vs ijson parsing, alone", ""),
        ):
            a, b = runs.get(f"{num}-{fmt}"), runs.get(f"{den}-{fmt}")
            value = a.cpu / b.cpu if a and b and a.cpu and b.cpu else None
            shown = f"{value:6.2f}" if value is not None else f"{'n/a':>6}"
            out.append(f"{num + '-' + fmt + '/' + den:<22} {meaning:<52} {shown}  {ref}")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.json_paths", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="records of each file (default 1000000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100000 records")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "feed-worker-bench" / "json")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    try:
        array, lines, made = ensure_files(args.workdir, rows, args.seed)
    except OSError as exc:
        say(f"could not write the feeds: {exc}")
        return 2
    say(f"feeds {'generated' if made else 'reused'} under {args.workdir}")
    for path in (array, lines):  # into the page cache
        with path.open("rb") as f:
            while f.read(1 << 20):
                pass
    logs = args.workdir / "logs"
    runs = {}
    for path in (array, lines):
        for mode in MODES:
            run = measure(mode, path, rows, logs)
            runs[run.label] = run
    import msgspec

    header = [
        f"feed-worker JSON parsing benchmark: {rows:,} records, feed.json "
        f"{array.stat().st_size / 2**20:.0f} MiB, feed.ndjson {lines.stat().st_size / 2**20:.0f} "
        f"MiB (seed {args.seed})",
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, msgspec "
        f"{msgspec.__version__}; CPU seconds are the child's own, so a busy machine skews "
        "them less than wall time",
    ]
    say(render(runs, header))
    say(f"\nbenchmark took {time.perf_counter() - start:.0f} s; logs in {logs}")
    failed = [r.label for r in runs.values() if not r.ok]
    if failed:
        say(f"failed or wrong: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
