"""feed_runs and feed_run_rejects: claiming a run with a lease, renewing, finishing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from worker.errors import FeedError
from worker.feedmapping import parse_mapping
from worker.model import Feed, FeedMapping, LastPull, RunReport, StoredReject
from worker.store.db import Conn, is_citus
from worker.store.queries import q

_SQL = "runs.sql"


async def load_feed(conn: Conn | asyncpg.Pool, feed_id: int) -> Feed | None:
    row = await conn.fetchrow(q(_SQL, "load_feed"), feed_id)
    return None if row is None else _feed(dict(row))


async def load_feed_claiming(conn: Conn, feed_id: int, message_id: str | None
                             ) -> tuple[Feed | None, int | None]:
    """The feed (None: there is none) and the run the pull-request `message_id` made, if
    one did, in one round trip."""
    if is_citus(conn):  # (a scalar subquery over a distributed table: two queries there)
        seen = None if message_id is None else await run_by_message(conn, message_id)
        return await load_feed(conn, feed_id), None if seen is None else seen["id"]
    row = await conn.fetchrow(q(_SQL, "load_feed_claiming"), feed_id, message_id)
    if row is None:
        return None, None
    data = dict(row)
    seen = data.pop("seen_run")
    return _feed(data), seen


def _feed(data: dict[str, Any]) -> Feed:
    raw = orjson.loads(data["mapping"]) if data["mapping"] else {}
    try:
        data["mapping"] = parse_mapping(raw, data["resource_type"], data["csv_has_header"])
    except FeedError as exc:  # the run is claimed, then fails with it (envelope.execute)
        data["mapping"] = FeedMapping(error=str(exc))
    return Feed(**data)


async def run_by_message(conn: Conn, message_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q(_SQL, "run_by_message"), message_id)


async def running_pull(conn: Conn, feed_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(q(_SQL, "running_pull"), feed_id)


async def claim_pull(conn: Conn, feed_id: int, message_id: str | None,
                     owner: str, lease_s: float, source: str | None, force: bool = False
                     ) -> tuple[int, LastPull | None] | None:
    """The new run's id and the feed's last succeeded pull (None: none did); None when a
    pull of the feed is running (no error: the transaction goes on)."""
    row = await conn.fetchrow(
        q(_SQL, "claim_pull", is_citus(conn)), feed_id, message_id, owner, lease_s, source, force
    )
    if row is None:
        return None
    last = (None if row["last_id"] is None else
            LastPull(row["last_id"], row["last_rows"], row["last_bytes"],
                     row["last_compression"]))
    return row["id"], last


async def record_skipped(conn: Conn, feed_id: int, message_id: str | None,
                         reason: str) -> int | None:
    run_id: int | None = await conn.fetchval(q(_SQL, "record_skipped"), feed_id, message_id,
                                             reason)
    return run_id


async def renew_lease(pool: asyncpg.Pool, run_id: int, owner: str, lease_s: float) -> bool:
    return await pool.fetchval(q(_SQL, "renew_lease"), run_id, owner, lease_s) is not None


async def record_attempts(pool: asyncpg.Pool, run_id: int, owner: str,
                          attempts: list[dict[str, Any]]) -> None:
    """The failed attempts of a running run so far (details.attempts), as they happen."""
    await pool.execute(q(_SQL, "record_attempts"), run_id, owner,
                       orjson.dumps(attempts).decode())


async def release_lease(pool: asyncpg.Pool, run_id: int, owner: str) -> None:
    await pool.execute(q(_SQL, "release_lease"), run_id, owner)


async def take_over(pool: asyncpg.Pool, owner: str, lease_s: float) -> asyncpg.Record | None:
    return await pool.fetchrow(q(_SQL, "take_over"), owner, lease_s)


def _figures(report: RunReport) -> tuple[Any, ...]:
    """The report as the $3.. parameters of finish_run and hold_run, without the error."""
    return (report.rows_read, report.inserted, report.updated, report.unchanged,
            report.rejected, report.duplicates, report.bytes,
            orjson.dumps(report.timings).decode(), orjson.dumps(report.details).decode())


def _rule_counts(report: RunReport) -> tuple[int, int, int, int]:
    return report.zeroed, report.connected, report.ambiguous, report.skipped


async def finish_run(conn: Conn, run_id: int, owner: str, status: str, report: RunReport,
                     error: str | None = None) -> bool:
    """Record the run's end; False when the run is no longer ours (nothing written)."""
    row = await conn.fetchrow(q(_SQL, "finish_run", is_citus(conn)), run_id, status,
                              *_figures(report), error, *_rule_counts(report), owner)
    return row is not None


async def hold_run(conn: Conn, run_id: int, owner: str, report: RunReport, reason: str) -> bool:
    """Record a run the circuit breaker held (nothing applied); False when no longer ours."""
    row = await conn.fetchval(q(_SQL, "hold_run", is_citus(conn)), run_id, owner,
                              *_figures(report), reason, *_rule_counts(report))
    return row is not None


async def fail_run(conn: Conn, run_id: int, owner: str | None,
                   report: RunReport, error: str) -> bool:
    row = await conn.fetchval(
        q(_SQL, "fail_run", is_citus(conn)), run_id, owner, report.rows_read, report.rejected,
        report.bytes, orjson.dumps(report.timings).decode(),
        orjson.dumps(report.details).decode(), error,
    )
    return row is not None


async def store_rejects(conn: Conn, run_id: int,
                        rejects: Sequence[StoredReject]) -> None:
    if not rejects:
        return
    if is_citus(conn):  # a reject names its run's feed there: the shard it goes to
        feed_id = await run_feed(conn, run_id)
        await conn.copy_records_to_table(
            "feed_run_rejects",
            records=[(run_id, feed_id, r.position, r.message_id, r.raw, r.reason)
                     for r in rejects],
            columns=["run_id", "inventory_feed_id", "position", "message_id", "raw",
                     "reason"],
        )
        return
    await conn.copy_records_to_table(
        "feed_run_rejects",
        records=[(run_id, r.position, r.message_id, r.raw, r.reason) for r in rejects],
        columns=["run_id", "position", "message_id", "raw", "reason"],
    )


async def get_run(conn: Conn | asyncpg.Pool, run_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(q(_SQL, "get_run"), run_id)
    return dict(row) if row is not None else {}


async def last_validators(conn: Conn | asyncpg.Pool, feed_id: int
                          ) -> tuple[int, dict[str, Any]] | None:
    row = await conn.fetchrow(q(_SQL, "last_validators"), feed_id)
    if row is None or not row["validators"]:
        return None
    validators = orjson.loads(row["validators"])
    return (row["id"], validators) if isinstance(validators, dict) else None


async def last_succeeded_pull(conn: Conn | asyncpg.Pool, feed_id: int) -> LastPull | None:
    row = await conn.fetchrow(q(_SQL, "last_succeeded_pull"), feed_id)
    if row is None:
        return None
    return LastPull(row["id"], row["rows_read"], row["bytes"], row["compression"])


async def skip_run(conn: Conn, run_id: int, owner: str, report: RunReport, reason: str) -> bool:
    row = await conn.fetchval(
        q(_SQL, "skip_run", is_citus(conn)), run_id, owner, report.bytes,
        orjson.dumps(report.timings).decode(), orjson.dumps(report.details).decode(), reason)
    return row is not None


async def run_feed(conn: Conn, run_id: int) -> int | None:
    """The feed of run `run_id`; None when there is no such run."""
    feed_id: int | None = await conn.fetchval(q(_SQL, "run_feed"), run_id)
    return feed_id


async def held_items(conn: Conn, run_id: int) -> list[str]:
    """The raw feed-update variants the run held back by the daily SKU limit, in order."""
    return [r["raw"] for r in await conn.fetch(q(_SQL, "held_items"), run_id)]
