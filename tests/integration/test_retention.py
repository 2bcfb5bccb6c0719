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


async def test_old_message_outcomes_and_api_messages_are_forgotten(
        pool: asyncpg.Pool) -> None:
    from tests.support import feeds
    from worker.store import retention as store

    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    await pool.execute(
        "INSERT INTO replay_outcomes (replay_id, message_id, outcome, recorded_at) VALUES "
        "('api', 'old', 'applied', now() - interval '10 days'), ('api', 'new', 'applied', now())")
    await pool.execute(
        "INSERT INTO api_messages (message_id, inventory_feed_id, variants, created_at) VALUES "
        "('old', $1, 1, now() - interval '10 days'), ('new', $1, 1, now())", feed_id)
    week = 7 * 24 * 3600.0
    assert await store.forget_outcomes(pool, week, 100) == 2
    assert await pool.fetchval("SELECT array_agg(message_id) FROM replay_outcomes") == ["new"]
    assert await pool.fetchval("SELECT array_agg(message_id) FROM api_messages") == ["new"]
    assert await store.forget_outcomes(pool, week, 100) == 0


async def test_old_notifications_are_forgotten(pool: asyncpg.Pool) -> None:
    from tests.support import feeds
    from worker.store import retention as store

    feed_id = await feeds.make_feed(pool, None)
    await pool.execute(
        "INSERT INTO notifications (key, inventory_feed_id, event, status, created_at) VALUES "
        "('old-sent', $1, 'run.failed', 'sent', now() - interval '10 days'), "
        "('old-stuck', $1, 'feed.stale', 'sending', now() - interval '10 days'), "
        "('new', $1, 'run.failed', 'sent', now())", feed_id)
    week = 7 * 24 * 3600.0
    assert await store.forget_notifications(pool, week, 1) == 1
    assert await store.forget_notifications(pool, week, 100) == 1
    assert await pool.fetchval("SELECT array_agg(key) FROM notifications") == ["new"]
    assert await store.forget_notifications(pool, week, 100) == 0
