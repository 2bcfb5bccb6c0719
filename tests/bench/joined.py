"""Two files, one feed: a catalogue joined with a stock file, against the two pulled alone.

Run from the repository root: `.venv/bin/python -m tests.bench.joined [--rows N]`. Not a
pass/fail test: it prints times, peak RSS and the ratio. Exit 1 when a run failed or
stored the wrong number of items, 2 when it could not be set up.

catalogue.csv (external_id, sku, name, price) and stock.csv (external_id, qty; the same
keys in another order) of --rows rows are served over HTTP on loopback. Each path runs
into its own new feed (first import), then again with 10% of the stock changed
(refresh):

  C    feed-worker import of catalogue.csv alone
  S    feed-worker import of stock.csv alone
  J    feed-worker import of catalogue.csv with stock.csv as mapping.secondary
       (joined by externalId in staging, one merge)

Reported: J / (C + S) for the first import and the refresh. What J adds to C is a second
stream into its own staging table and the join (an UPDATE of every staged row).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path

import asyncpg
import orjson

from tests.bench import db
from tests.bench.children import ChildResult, run_child_async
from tests.bench.httpserver import serve_files
from tests.bench.pull_csv import feed_worker_binary, say

DATABASE = "feed_worker_bench_joined"


def write_files(directory: Path, rows: int, seed: int, round_: int) -> tuple[Path, Path]:
    """The catalogue and the stock file (round 1: 10% of the quantities changed)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    catalogue, stock = directory / "catalogue.csv", directory / f"stock{round_}.csv"
    keys = list(range(rows))
    if not catalogue.exists() or round_ == 0:
        rng.shuffle(keys)
        with catalogue.open("w") as f:
            f.write("external_id,sku,name,price\n")
            f.writelines(f"K{k:08d},SKU{k:08d},Item {k} of the catalogue,{k % 997}.{k % 100:02d}\n"
                         for k in keys)
    rng.shuffle(keys)
    changed = set(rng.sample(range(rows), rows // 10)) if round_ else set()
    with stock.open("w") as f:
        f.write("external_id,qty\n")
        f.writelines(f"K{k:08d},{(k * 7 + (3 if k in changed else 0)) % 500}\n" for k in keys)
    return catalogue, stock


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.joined", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "feed-worker-bench" / "joined")
    opts = parser.parse_args(argv)
    feed_worker = feed_worker_binary()
    if feed_worker is None:
        say("feed-worker is not installed: run `make venv` first")
        return 2
    base = os.environ.get("DATABASE_URL", "postgresql://localhost/feed_worker")
    url = db.with_database(base, DATABASE)
    await db.recreate_database(base, DATABASE)
    env = {**os.environ, "DATABASE_URL": url, "FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32"}
    logs = opts.workdir / "logs"
    migrated = await run_child_async([feed_worker, "migrate"], log=logs / "migrate.log", env=env)
    if not migrated.ok:
        say(f"feed-worker migrate failed:\n{migrated.tail()}")
        return 2
    catalogue, stock0 = write_files(opts.workdir, opts.rows, 42, 0)
    _, stock1 = write_files(opts.workdir, opts.rows, 42, 1)
    files = {"catalogue.csv": catalogue, "stock0.csv": stock0, "stock1.csv": stock1}
    conn = await asyncpg.connect(url)
    results: dict[str, ChildResult] = {}
    failed = False
    try:
        async with serve_files(files) as served:
            provider = await conn.fetchval(
                "INSERT INTO dropship_providers (name) VALUES ('bench') RETURNING id")
            mappings = {
                "C": {"fields": {"vendorSku": "sku", "retailPrice": "price"}},
                "S": {"fields": {"inventoryQuantity": "qty"}},
                "J": {"fields": {"vendorSku": "sku", "retailPrice": "price"},
                      "secondary": {"url": f"{served}/stock0.csv",
                                    "mapping": {"fields": {"inventoryQuantity": "qty"}}}},
            }
            feeds = {label: await conn.fetchval(
                "INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type, "
                "mapping) VALUES ($1, $2, 'ftp_csv', $3::jsonb) RETURNING id",
                provider, label, orjson.dumps(m).decode()) for label, m in mappings.items()}
            for round_ in (0, 1):
                if round_:  # the refresh's stock file
                    second = {**mappings["J"]["secondary"], "url": f"{served}/stock1.csv"}
                    refresh = orjson.dumps({**mappings["J"], "secondary": second}).decode()
                    await conn.execute("UPDATE inventory_feeds SET mapping = $2::jsonb "
                                       "WHERE id = $1", feeds["J"], refresh)
                for label in ("C", "S", "J"):
                    served_as = {"C": "catalogue.csv", "J": "catalogue.csv",
                                 "S": f"stock{round_}.csv"}[label]
                    await db.quiesce(conn)
                    name = f"{label}{round_}"
                    say(f"running {name} ...")
                    result = await run_child_async(
                        [feed_worker, "import", "--feed", str(feeds[label]), "--url",
                         f"{served}/{served_as}"], log=logs / f"{name}.log", env=env)
                    items = await conn.fetchval(
                        "SELECT count(*) FROM inventory_feed_variants WHERE inventory_feed_id = $1",
                        feeds[label])
                    if not result.ok or items != opts.rows:
                        say(f"{name} failed (exit {result.returncode}, {items} items):\n"
                            f"{result.tail()}")
                        failed = True
                    results[name] = result
    finally:
        await conn.close()
    say(f"\nTwo files, one feed: {opts.rows:,} rows each; seconds and peak RSS (MiB)")
    for name, r in results.items():
        say(f"  {name:<4} {r.seconds:7.2f} s  {r.max_rss_mib:6.0f} MiB")
    for round_, what in ((0, "first import"), (1, "refresh, 10% of the stock changed")):
        c, s, j = (results.get(f"{x}{round_}") for x in "CSJ")
        if c and s and j:
            say(f"  J/(C+S) {what}: {j.seconds / (c.seconds + s.seconds):.2f} "
                f"({j.seconds:.2f} s vs {c.seconds:.2f} + {s.seconds:.2f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
