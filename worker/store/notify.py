"""Notifications in Postgres: a feed's targets, deciding each notification once (its key),
how its delivery ended, stale feeds, and disabling a feed that keeps failing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from worker.store.db import Conn
from worker.store.queries import q

_SQL = "notify.sql"
Db = Conn | asyncpg.Pool


@dataclass(frozen=True)
class FeedTarget:
    """A feed's own notification settings; None: the worker's."""

    feed_id: int
    name: str
    url: str | None
    secret: str | None
    rejected_share: float | None
    disabled_reason: str | None

    def __repr__(self) -> str:  # never the secret, wherever a target is printed
        return f"FeedTarget(feed_id={self.feed_id}, url={'set' if self.url else None})"


@dataclass(frozen=True)
class Stale:
    notification_id: int
    feed_id: int
    last_run_id: int | None        # the feed's last succeeded pull; None: none ever did
    last_succeeded_at: datetime | None
    every_s: float


async def feed_target(db: Db, feed_id: int) -> FeedTarget | None:
    row = await db.fetchrow(q(_SQL, "feed_target"), feed_id)
    if row is None:
        return None
    return FeedTarget(row["id"], row["name"], row["notify_url"], row["notify_secret"],
                      row["notify_rejected_share"], row["disabled_reason"])


async def claim(db: Db, key: str, feed_id: int, run_id: int | None, event: str) -> int | None:
    """The new notification's id; None when one of that key was decided already."""
    notification_id: int | None = await db.fetchval(q(_SQL, "claim"), key, feed_id, run_id,
                                                    event)
    return notification_id


async def finish(db: Db, notification_id: int, sent: bool, attempts: int,
                 error: str | None) -> None:
    await db.execute(q(_SQL, "finish"), notification_id, "sent" if sent else "failed",
                     attempts, error)


async def auto_disable(db: Db, run_id: int, default_after: int) -> str | None:
    """Disable the feed of failed run `run_id` when it failed often enough in a row; the
    reason stored, or None (not disabled)."""
    reason: str | None = await db.fetchval(q(_SQL, "auto_disable"), run_id, default_after)
    return reason


async def claim_stale(db: Db, worker_has_url: bool, limit: int) -> list[Stale]:
    rows = await db.fetch(q(_SQL, "claim_stale"), worker_has_url, limit)
    return [Stale(r["id"], r["feed_id"], r["ok_id"], r["ok_at"], r["every_s"]) for r in rows]
