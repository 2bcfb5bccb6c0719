"""Claiming a pull: one running pull per feed across replicas, idempotent per message."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from worker.errors import DEAD_FEED_DISABLED, DEAD_NOT_PULLABLE, DEAD_UNKNOWN_FEED, BadMessage
from worker.model import Feed, LastPull
from worker.store import runs
from worker.urls import mask

PULL_TYPES = ("ftp_csv", "spreadsheet", "xml", "json")


@dataclass(frozen=True)
class Claim:
    """What claiming a pull gave: a run to execute, or why there is nothing to do."""

    run_id: int | None
    feed: Feed
    skipped: str | None = None  # reason, when no run was started
    last: LastPull | None = None  # the feed's last succeeded pull, when a run was started


def check_pullable(feed: Feed | None, feed_id: int) -> Feed:
    if feed is None:
        raise BadMessage(f"feed {feed_id} does not exist", DEAD_UNKNOWN_FEED)
    if not feed.enabled:
        raise BadMessage(f"feed {feed_id} is disabled", DEAD_FEED_DISABLED)
    if feed.provider_archived:
        raise BadMessage(f"feed {feed_id} belongs to an archived dropship provider",
                         DEAD_FEED_DISABLED)
    if feed.resource_type not in PULL_TYPES:
        raise BadMessage(f"feed {feed_id} has resource_type {feed.resource_type!r}, which "
                         f"cannot be pulled (pullable: {', '.join(PULL_TYPES)})",
                         DEAD_NOT_PULLABLE)
    return feed


async def claim_pull(pool: asyncpg.Pool, feed_id: int, message_id: str | None, owner: str,
                     lease_s: float, url: str | None = None, force: bool = False) -> Claim:
    """Start a run for the feed, unless this message already did or a pull is running.
    Two round trips and no transaction of its own: the claim is one INSERT, which the
    unique indexes of feed_runs keep to one running pull per feed and one run per
    message (the reads before it only tell why nothing was claimed)."""
    async with pool.acquire() as conn:
        found, seen = await runs.load_feed_claiming(conn, feed_id, message_id)
        feed = check_pullable(found, feed_id)
        if seen is not None:
            return Claim(None, feed, f"message {message_id} already made run {seen}")
        source = mask(url or feed.resource_location or "")
        claimed = await runs.claim_pull(conn, feed_id, message_id, owner, lease_s, source,
                                        force)
        if claimed is None:
            running = await runs.running_pull(conn, feed_id)
            other = running["id"] if running is not None else "?"
            reason = f"a pull of feed {feed_id} is already running (run {other})"
            await runs.record_skipped(conn, feed_id, message_id, reason)
            return Claim(None, feed, reason)
        return Claim(claimed[0], feed, last=claimed[1])
