"""Retention of item history and of past days of the daily SKU limit."""

from __future__ import annotations

from dataclasses import replace

import asyncpg

from worker import retention
from worker.settings import Settings


async def test_old_history_and_past_days_are_forgotten(pool: asyncpg.Pool,
                                                       settings: Settings) -> None:
    await pool.execute(
        "INSERT INTO variant_inventory_updates (inventory_feed_variant_id, inventory_feed_id, "
        "action_type, created_at) VALUES (1, 1, 'update', now() - interval '10 days'), "
        "(2, 1, 'update', now() - interval '1 hour')")
    await pool.execute(
        "INSERT INTO provider_daily_items (dropship_provider_id, day, inventory_feed_id, "
        "external_id) VALUES (1, (now() AT TIME ZONE 'UTC')::date - 3, 1, 'old'), "
        "(1, (now() AT TIME ZONE 'UTC')::date, 1, 'today')")
    week = replace(settings, history_retention_s=7 * 24 * 3600.0)
    assert await retention.forget_once(pool, week) == (1, 1)
    assert await pool.fetchval("SELECT inventory_feed_variant_id "
                               "FROM variant_inventory_updates") == 2
    assert await pool.fetchval("SELECT external_id FROM provider_daily_items") == "today"
    assert await retention.forget_once(pool, week) == (0, 0)
