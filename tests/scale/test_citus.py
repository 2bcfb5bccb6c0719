"""Past one Postgres: the same pushes and pulls against one Postgres and against a Citus
cluster (a coordinator and two workers on loopback, tests/scale/citus_cluster.py) give the
same tables; then a 1M-row pull and a push run on both, in one run, with their ratio.

`make scale` runs it (it builds Citus first when missing: `make citus`). Figures are
printed and appended to tests/scale/last-run.txt. FEED_WORKER_SCALE_CITUS_ROWS sets the
pull's rows (default 1,000,000), FEED_WORKER_SCALE_CITUS_PUSH the push's messages."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bench import feedgen, pushgen
from tests.scale import citus_workload as w
from tests.scale.citus_cluster import CitusCluster, citus_cluster, missing_citus
from tests.support import feeds
from worker.store import db

ROOT = Path(__file__).resolve().parents[2]
LAST_RUN = Path(__file__).with_name("last-run.txt")
FEEDS = ROOT / ".cache" / "scale-feeds"
ROWS = int(os.environ.get("FEED_WORKER_SCALE_CITUS_ROWS", "1000000"))
PUSH_MESSAGES = int(os.environ.get("FEED_WORKER_SCALE_CITUS_PUSH", "400"))
PUSH_PER_MESSAGE = 50
PUSH_GROUP = 40  # messages per micro-batch, as the consumer folds them


@pytest.fixture(scope="module")
def cluster() -> Iterator[CitusCluster]:
    problem = missing_citus()
    if problem:
        pytest.fail(problem)
    with citus_cluster() as c:
        yield c


def report(title: str, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """A small table, printed and appended to last-run.txt."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [title, "  ".join(h.ljust(n) for h, n in zip(header, widths, strict=True))]
    lines += ["  ".join(str(x).ljust(n) for x, n in zip(r, widths, strict=True)) for r in rows]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with LAST_RUN.open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} {text}\n")


async def _same_work(dsn: str, files: list[Path]) -> dict[str, list[tuple[object, ...]]]:
    pool = await db.create_pool(dsn, size=4)
    try:
        settings = w.settings_for(dsn)
        f = await w.make_feeds(pool)
        for path in files:
            run = await w.pull(pool, settings, f.pulled, path)
            assert run["status"] == "succeeded", run["error"]
        await w.push(pool, settings, w.push_groups(f, 40, 25, 8))
        return await w.snapshot(pool)
    finally:
        await pool.close()


async def test_push_and_pull_give_the_same_tables(cluster: CitusCluster,
                                                  tmp_path: Path) -> None:
    files = w.pull_files(tmp_path, 6_000)
    single = await _same_work(cluster.single_dsn, files)
    citus = await _same_work(cluster.citus_dsn, files)
    rows = [(name, len(single[name]), len(citus[name]),
             "same" if single[name] == citus[name] else "DIFFERENT") for name in single]
    report("Citus: the same pushes and pulls, one Postgres vs the cluster",
           ("table", "one Postgres", "Citus", "contents"), rows)
    # the work touched every kind of row the comparison is about
    assert len(single["items"]) > 6_000
    assert single["history"]
    assert single["daily"]
    reasons = {r[-1] for r in single["rejects"]}
    assert "daily limit" in reasons
    assert len(reasons) > 1, reasons
    missing = 1 + w.ITEM_COLUMNS.index("missing_since IS NOT NULL AS missing")
    assert any(r[missing] for r in single["items"]), "cleanup zeroed nothing"
    for name in single:
        assert single[name] == citus[name], name


@dataclass
class Timing:
    seconds: float
    rows: int

    @property
    def per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def _pull_bench(dsn: str, files: feedgen.FeedFiles) -> tuple[Timing, Timing]:
    """A first import of the file, then a refresh with a share of its rows changed."""
    pool = await db.create_pool(dsn, size=4)
    try:
        settings = w.settings_for(dsn)
        feed = await feeds.make_feed(pool, None, fetch_cleanup="enabled")
        out = []
        for path in (files.base, files.updated):
            assert path is not None
            started = time.perf_counter()
            run = await w.pull(pool, settings, feed, path)
            took = time.perf_counter() - started
            assert run["status"] == "succeeded", run["error"]
            out.append(Timing(took, run["rows_read"]))
        count = await pool.fetchval(
            "SELECT count(*) FROM inventory_feed_variants WHERE inventory_feed_id = $1", feed)
        assert count == files.rows
        return out[0], out[1]
    finally:
        await pool.close()


async def _push_bench(dsn: str) -> Timing:
    """Feed-update messages applied in micro-batches (no broker: apply_group, as the
    consumer calls it), to a feed seeded with half of their items."""
    pool = await db.create_pool(dsn, size=4)
    try:
        settings = w.settings_for(dsn)
        feed = await feeds.make_feed(pool, None, resource_type="webhook")
        items = PUSH_MESSAGES * PUSH_PER_MESSAGE
        seed = "".join(pushgen.seed_lines(feed, items)).encode()
        async with pool.acquire() as conn:
            await conn.copy_to_table("inventory_feed_variants", source=_chunks(seed),
                                     columns=list(pushgen.SEED_COLUMNS), format="text")
        bodies = pushgen.bodies(feed, PUSH_MESSAGES, PUSH_PER_MESSAGE)
        messages = [(b, f"bench-{n}", w.T0) for n, b in enumerate(bodies)]
        groups = [messages[i:i + PUSH_GROUP] for i in range(0, len(messages), PUSH_GROUP)]
        started = time.perf_counter()
        applied = await w.push(pool, settings, groups)
        took = time.perf_counter() - started
        total = await pool.fetchval(
            "SELECT coalesce(sum(inventory_quantity), 0) FROM inventory_feed_variants "
            "WHERE inventory_feed_id = $1", feed)
        assert applied == items
        assert total == pushgen.totals(items).quantity_sum
        return Timing(took, items)
    finally:
        await pool.close()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_pull_and_push_throughput_one_postgres_and_citus(cluster: CitusCluster) -> None:
    files, _ = feedgen.ensure_feed(FEEDS, ROWS, seed=7, with_update=True, changed_share=0.1)
    single_import, single_refresh = await _pull_bench(cluster.single_dsn, files)
    citus_import, citus_refresh = await _pull_bench(cluster.citus_dsn, files)
    single_push = await _push_bench(cluster.single_dsn)
    citus_push = await _push_bench(cluster.citus_dsn)
    rows = []
    for what, one, many in (
            (f"pull, first import ({ROWS:,} rows)", single_import, citus_import),
            (f"pull, refresh ({ROWS:,} rows, 10% changed)", single_refresh, citus_refresh),
            (f"push ({PUSH_MESSAGES} msgs x {PUSH_PER_MESSAGE} variants)", single_push,
             citus_push)):
        rows.append((what, f"{one.seconds:.2f}", f"{one.per_s:,.0f}", f"{many.seconds:.2f}",
                     f"{many.per_s:,.0f}", f"{many.per_s / one.per_s:.2f}"))
    report("Citus (coordinator + 2 workers, one 2-core machine) vs one Postgres",
           ("work", "one PG s", "one PG rows/s", "Citus s", "Citus rows/s",
            "Citus/one"), rows)
    assert all(t.seconds > 0 for t in (citus_import, citus_refresh, citus_push))
