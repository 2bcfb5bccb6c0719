"""The benchmark's own database: create, reset between runs, and check what a run loaded."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_DATABASE_URL = "postgresql://localhost/feed_worker"
SQL_DIR = Path(__file__).with_name("sql")
SAMPLE_SIZE = 2_000

CREATE_PROVIDER = "INSERT INTO dropship_providers (name) VALUES ($1) RETURNING id"
CREATE_FEED = """
INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type, resource_location,
                             csv_has_header, mapping)
VALUES ($1, $2, 'ftp_csv', $3, true, '{}')
RETURNING id
"""
RESET = "TRUNCATE inventory_feed_variants, bench_pgloader; DELETE FROM feed_runs"
COUNT_ROWS = "SELECT count(*) FROM inventory_feed_variants WHERE inventory_feed_id = $1"
SAMPLE_ROWS = """
SELECT external_id, vendor_sku, barcode, name, retail_price, compare_at_price,
       inventory_quantity, grams
FROM inventory_feed_variants
WHERE inventory_feed_id = $1 AND external_id = ANY($2::text[])
"""
LAST_RUN = """
SELECT id, status, rows_read, inserted, updated, unchanged, rejected, duplicates, bytes,
       finished_at - started_at AS elapsed, timings, details, error
FROM feed_runs WHERE inventory_feed_id = $1 ORDER BY id DESC LIMIT 1
"""

# external_id -> (vendor_sku, barcode, name, retail_price, compare_at_price, quantity, grams)
Item = tuple[
    str | None, str | None, str | None, Decimal | None, Decimal | None, int | None, Decimal | None
]


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (same host, user, password and options)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def recreate_database(url: str, name: str) -> None:
    """Drop and create database `name`, through the `postgres` database of `url`'s server."""
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


async def prepare(conn: asyncpg.Connection, base_url: str, feeds: list[str]) -> dict[str, int]:
    """Create the plain pgloader table and one feed per name; returns name -> feed id."""
    await conn.execute((SQL_DIR / "plain_table.sql").read_text())
    provider_id = await conn.fetchval(CREATE_PROVIDER, "feed-worker benchmark")
    return {
        name: await conn.fetchval(CREATE_FEED, provider_id, f"bench {name}", base_url)
        for name in feeds
    }


async def reset(conn: asyncpg.Connection) -> None:
    await conn.execute(RESET)


async def quiesce(conn: asyncpg.Connection) -> None:
    """VACUUM ANALYZE and CHECKPOINT, so a timed run does not pay for the previous one."""
    await conn.execute("VACUUM ANALYZE")
    await conn.execute("CHECKPOINT")


def _text(value: str) -> str | None:
    return value or None


def _number(value: str) -> Decimal | None:
    return Decimal(value) if value else None


def read_sample(path: Path, rows: int) -> dict[str, Item]:
    """About SAMPLE_SIZE items spread over the whole file, parsed as a reader would (the
    first eight columns: the rules file of pull_csv's V runs has more)."""
    stride = max(1, rows // SAMPLE_SIZE)
    sample: dict[str, Item] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for i, row in enumerate(reader):
            if i % stride == 0:
                ext, sku, barcode, name, price, compare, qty, grams = row[:8]
                sample[ext] = (
                    _text(sku),
                    _text(barcode),
                    _text(name),
                    _number(price),
                    _number(compare),
                    int(qty) if qty else None,
                    _number(grams),
                )
    return sample


@dataclass(frozen=True)
class Check:
    rows: int
    expected_rows: int
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return self.rows == self.expected_rows and not self.mismatches

    def summary(self) -> str:
        count = f"rows {self.rows}" + ("" if self.rows == self.expected_rows else " MISMATCH")
        sample = "sample MISMATCH" if self.mismatches else "sample OK"
        return f"{count}, {sample}"


async def check_feed(
    conn: asyncpg.Connection, feed_id: int, expected_rows: int, sample: dict[str, Item]
) -> Check:
    """Row count of the feed, and the sampled items compared column by column."""
    rows = await conn.fetchval(COUNT_ROWS, feed_id)
    found = {r["external_id"]: r for r in await conn.fetch(SAMPLE_ROWS, feed_id, list(sample))}
    mismatches: list[str] = []
    for ext, expected in sample.items():
        record = found.get(ext)
        if record is None:
            mismatches.append(f"{ext}: missing")
            continue
        actual = (
            record["vendor_sku"] or None,
            record["barcode"] or None,
            record["name"] or None,
            record["retail_price"],
            record["compare_at_price"],
            record["inventory_quantity"],
            record["grams"],
        )
        if actual != expected:
            mismatches.append(f"{ext}: expected {expected}, found {actual}")
    return Check(rows, expected_rows, mismatches)


async def last_run(conn: asyncpg.Connection, feed_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(LAST_RUN, feed_id)


async def count_plain(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM bench_pgloader"))
