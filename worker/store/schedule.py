"""Schedules in Postgres: the scheduler's leader lock and the feeds due for a pull."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from worker.constants import LOCK_CLASS_SCHEDULER
from worker.store.db import Conn
from worker.store.queries import q

_SQL = "schedule.sql"


@dataclass(frozen=True)
class Due:
    feed_id: int
    due_at: datetime  # when the feed fell due: the same until it is queued

    @property
    def message_id(self) -> str:
        """The pull-request's id, one per slot: a publish retried after a failed commit
        repeats it, so the run it made already is recognised (feed_runs.message_id)."""
        return f"schedule-{self.feed_id}-{self.due_at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"


async def try_lead(conn: Conn) -> bool:
    """Take the scheduler lock for this session if no other session holds it."""
    return bool(await conn.fetchval(q(_SQL, "try_lead"), LOCK_CLASS_SCHEDULER))


async def unlock(conn: Conn) -> None:
    await conn.fetchval(q(_SQL, "unlock"), LOCK_CLASS_SCHEDULER)


async def name_session(conn: Conn, name: str) -> None:
    await conn.fetchval(q(_SQL, "name_session"), name[:63])


async def claim_due(conn: Conn, limit: int) -> list[Due]:
    """Mark up to `limit` due feeds queued; inside a transaction that commits only once
    their pull-requests are confirmed."""
    rows = await conn.fetch(q(_SQL, "claim_due"), limit)
    return [Due(r["id"], r["due_at"]) for r in rows]
