"""The peers feed-worker is compared with: psql by hand, naive asyncpg, pgloader."""

from __future__ import annotations

import csv
import getpass
import itertools
import re
import shutil
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from tests.bench.children import ChildResult, run_child_async
from tests.bench.db import SQL_DIR

PGLOADER_INSTALL = "apt-get install -y pgloader"
_TAG = re.compile(r"^(INSERT 0|MERGE) (\d+)$", re.MULTILINE)


async def psql_load(
    script: str, database_url: str, feed_id: int, csv_path: Path, log: Path
) -> tuple[ChildResult, int | None]:
    """Run sql/<script> in one psql session with the CSV on stdin; returns rows written."""
    argv = [
        "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        f"feed_id={feed_id}",
        "-d",
        database_url,
        "-f",
        str(SQL_DIR / script),
    ]
    result = await run_child_async(argv, log=log, stdin=csv_path)
    tags = _TAG.findall(result.output())
    return result, int(tags[-1][1]) if tags else None


@dataclass(frozen=True)
class NaiveResult:
    rows: int
    seconds: float


def _convert(row: list[str], feed_id: int) -> tuple[object, ...]:
    ext, sku, barcode, name, price, compare, qty, grams = row
    return (
        feed_id,
        ext,
        sku or None,
        barcode or None,
        name or None,
        Decimal(price),
        Decimal(compare) if compare else None,
        int(qty),
        Decimal(grams) if grams else Decimal(0),
    )


async def naive_upsert(
    conn: asyncpg.Connection, feed_id: int, csv_path: Path, rows: int
) -> NaiveResult:
    """Parse the first `rows` rows and upsert them with one executemany (timed together)."""
    sql = (SQL_DIR / "naive_upsert.sql").read_text()
    start = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        records = [_convert(row, feed_id) for row in itertools.islice(reader, rows)]
    await conn.executemany(sql, records)
    return NaiveResult(len(records), time.perf_counter() - start)


def pgloader_binary() -> str | None:
    return shutil.which("pgloader")


def _pgloader_url(database_url: str) -> str:
    """pgloader wants the user and host spelled out (it does not default to $USER)."""
    parts = urlsplit(database_url)
    if parts.username:
        return database_url
    netloc = f"{quote(getpass.getuser())}@{parts.netloc or 'localhost'}"
    return urlunsplit(parts._replace(netloc=netloc))


async def pgloader_load(
    binary: str, database_url: str, csv_path: Path, workdir: Path, log: Path
) -> ChildResult:
    """Plain load of the CSV into bench_pgloader (no upsert) with a pgloader command file."""
    command = (SQL_DIR / "pgloader.load").read_text()
    command = "\n".join(line for line in command.splitlines() if not line.startswith("--"))
    command_file = workdir / "pgloader.load"
    command_file.write_text(
        command.format(
            csv_path=csv_path, database_url=_pgloader_url(database_url), table="bench_pgloader"
        )
    )
    argv = [binary, "--root-dir", str(workdir / "pgloader"), str(command_file)]
    return await run_child_async(argv, log=log)
