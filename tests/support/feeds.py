"""Test data in the database: providers, feeds, and what landed."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from worker import envelope
from worker.claims import claim_pull
from worker.model import PullJob
from worker.pipeline import pull
from worker.settings import Settings
from worker.store import runs


async def make_feed(pool: asyncpg.Pool, url: str | None = None, **columns: Any) -> int:
    """A feed of a new provider. Cleanup is off unless the test asks for it
    (fetch_cleanup='enabled'): most tests pull partial files on purpose."""
    provider = await pool.fetchval(
        "INSERT INTO dropship_providers (name) VALUES ('acme') RETURNING id")
    values = {"dropship_provider_id": provider, "name": "acme feed",
              "resource_type": "ftp_csv", "resource_location": url,
              "fetch_cleanup": "disabled", **columns}
    if "mapping" in values and not isinstance(values["mapping"], str):
        values["mapping"] = orjson.dumps(values["mapping"]).decode()
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    feed_id: int = await pool.fetchval(
        f"INSERT INTO inventory_feeds ({names}) VALUES ({params}) RETURNING id", *values.values())
    return feed_id


async def items(pool: asyncpg.Pool, feed_id: int) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM inventory_feed_variants WHERE inventory_feed_id = $1", feed_id)
    return {r["external_id"]: dict(r) for r in rows}


async def table_state(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """Every stored item, in full, to show a failed run changed nothing."""
    rows = await pool.fetch("SELECT * FROM inventory_feed_variants ORDER BY id")
    return [tuple(r.values()) for r in rows]


async def rejects(pool: asyncpg.Pool, run_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT position, raw, reason FROM feed_run_rejects WHERE run_id = $1 ORDER BY position",
        run_id)
    return [dict(r) for r in rows]


async def run_row(pool: asyncpg.Pool, run_id: int) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM feed_runs WHERE id = $1", run_id)
    assert row is not None
    return dict(row)


async def pull_once(pool: asyncpg.Pool, settings: Settings, feed_id: int,
                    url: str | None = None, force: bool = False,
                    local_files: bool = False) -> dict[str, Any]:
    """Claim and execute one pull as the daemon would (or, with local_files, as
    `feed-worker import --url file:///...` does); the run row afterwards."""
    claim = await claim_pull(pool, feed_id, None, settings.worker_id, settings.lease_s, url)
    assert claim.run_id is not None, claim.skipped
    job = PullJob(claim.run_id, claim.feed, pull.feed_url(claim.feed, url),
                       settings.worker_id, force=force, local_files=local_files)
    await envelope.execute(pool, settings, job)
    return await run_row(pool, claim.run_id)


async def dry_run(pool: asyncpg.Pool, settings: Settings, feed_id: int,
                  url: str | None = None) -> envelope.Outcome:
    """A dry run as `import --dry-run` makes it: no run row, everything rolled back."""
    feed = await runs.load_feed(pool, feed_id)
    assert feed is not None
    job = PullJob(0, feed, pull.feed_url(feed, url), settings.worker_id, dry_run=True)
    return await envelope.execute(pool, settings, job)


async def database_state(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the schema, to show that something changed nothing."""
    tables = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    state = {}
    for t in tables:
        rows = await pool.fetch(f'SELECT * FROM "{t["tablename"]}" ORDER BY 1')
        state[t["tablename"]] = [tuple(r.values()) for r in rows]
    return state
