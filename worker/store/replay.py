"""Replay outcomes in Postgres: what the daemon recorded for each replayed message."""

from __future__ import annotations

from dataclasses import dataclass

from worker.store.db import Conn
from worker.store.queries import q

_SQL = "replay.sql"


@dataclass(frozen=True)
class Outcome:
    """One row of replay_outcomes: applied, stale, rejected, repeat or dead-lettered."""

    outcome: str
    variants: int
    applied: int
    stale: int
    rejected: int
    reason: str | None


async def outcomes(conn: Conn, replay_id: str, message_ids: list[str]) -> dict[str, Outcome]:
    """The outcomes recorded so far for these messages of one replay, by message id."""
    rows = await conn.fetch(q(_SQL, "outcomes"), replay_id, message_ids)
    return {r["message_id"]: Outcome(r["outcome"], r["variants"], r["applied"], r["stale"],
                                     r["rejected"], r["reason"])
            for r in rows}
