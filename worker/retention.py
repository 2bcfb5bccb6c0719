"""Side task of the daemon: old item history, past days of the daily SKU limit, old
message outcomes (replays', the API's) and old notifications go."""

from __future__ import annotations

import asyncio

import asyncpg

from worker import logs
from worker.settings import Settings
from worker.store import retention as store

log = logs.get(__name__)

SLICE_ROWS = 10_000


async def forget_once(pool: asyncpg.Pool, settings: Settings) -> tuple[int, int]:
    """One slice of each table; the rows deleted from (history, daily items)."""
    history = await store.forget_history(pool, settings.history_retention_s, SLICE_ROWS)
    daily = await store.forget_daily_items(pool, SLICE_ROWS)
    return history, daily


async def run(pool: asyncpg.Pool, settings: Settings) -> None:
    """Forever: slices while there is more to delete, then a pause."""
    while True:
        history, daily = await forget_once(pool, settings)
        # The status URL reads outcomes as long as the message's id is remembered.
        outcomes = await store.forget_outcomes(pool, settings.message_retention_s, SLICE_ROWS)
        told = await store.forget_notifications(pool, settings.history_retention_s,
                                                SLICE_ROWS)
        if history or daily or outcomes or told:
            log.info("retention.deleted", history=history, daily_items=daily,
                     outcomes=outcomes, notifications=told)
        if max(history, daily, outcomes, told) < SLICE_ROWS:
            await asyncio.sleep(min(3600.0, settings.history_retention_s / 10,
                                    settings.message_retention_s / 10))
