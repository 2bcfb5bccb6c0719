"""Daily SKU limits, manual quantity overrides and the item history (pull)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

HEADER = "external_id,qty,retail_price\n"


class Feed:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, server: FeedServer) -> None:
        self.pool, self.settings, self.server, self.n, self.id = pool, settings, server, 0, 0

    async def pull(self, body: str, settings: Settings | None = None) -> dict[str, Any]:
        self.n += 1
        url = self.server.add(f"/items-{self.id}-{self.n}.csv", (HEADER + body).encode())
        run = await feeds.pull_once(self.pool, settings or self.settings, self.id, url)
        assert run["status"] == "succeeded", run["error"]
        return run

    async def items(self) -> dict[str, dict[str, Any]]:
        return await feeds.items(self.pool, self.id)


async def feed(pool: asyncpg.Pool, settings: Settings, server: FeedServer,
               limit: int | None = None, provider: int | None = None) -> Feed:
    f = Feed(pool, settings, server)
    f.id = await feeds.make_feed(pool, None)
    if provider is not None:
        await pool.execute("UPDATE inventory_feeds SET dropship_provider_id = $2 WHERE id = $1",
                           f.id, provider)
    await pool.execute("UPDATE dropship_providers p SET daily_sku_limit = $2 "
                       "FROM inventory_feeds f WHERE f.id = $1 AND p.id = f.dropship_provider_id",
                       f.id, limit)
    return f


async def test_daily_limit_crossed_mid_file(pool: asyncpg.Pool, settings: Settings,
                                            feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server, limit=3)
    run = await f.pull("E1,1,1.00\nE2,2,2.00\nE3,3,3.00\nE4,4,4.00\nE5,5,5.00\n")
    assert (run["inserted"], run["skipped"], run["unchanged"]) == (3, 2, 0)
    assert sorted(await f.items()) == ["E1", "E2", "E3"]  # file order decides
    held = await feeds.rejects(pool, run["id"])
    assert [(r["position"], r["reason"]) for r in held] == [(5, "daily limit"),
                                                            (6, "daily limit")]
    # kept whole, as a feed-update variant, to be applied on a later day
    assert orjson.loads(held[0]["raw"]) == {"externalId": "E4", "inventoryQuantity": 4,
                                            "retailPrice": 4.0, "currency": None}
    # later the same day: the items written today may change again; new ones wait
    again = await f.pull("E1,9,1.00\nE6,6,6.00\n")
    assert (again["updated"], again["inserted"], again["skipped"]) == (1, 0, 1)
    assert (await f.items())["E1"]["inventory_quantity"] == 9


async def test_daily_limit_is_shared_by_the_providers_feeds(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    a = await feed(pool, settings, feed_server, limit=4)
    provider = await pool.fetchval("SELECT dropship_provider_id FROM inventory_feeds "
                                   "WHERE id = $1", a.id)
    b = await feed(pool, settings, feed_server, limit=4, provider=provider)
    await a.pull("E1,1,1\nE2,1,1\nE3,1,1\n")
    run = await b.pull("E1,1,1\nE2,1,1\nE3,1,1\n")
    assert (run["inserted"], run["skipped"]) == (1, 2)


async def test_unchanged_items_do_not_count_towards_the_limit(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server, limit=None)
    await f.pull("E1,1,1\nE2,1,1\n")
    await pool.execute("UPDATE dropship_providers SET daily_sku_limit = 1")
    run = await f.pull("E1,1,1\nE2,1,1\nE3,1,1\n")
    assert (run["unchanged"], run["inserted"], run["skipped"]) == (2, 1, 0)


async def test_a_manual_override_wins_until_cleared(pool: asyncpg.Pool, settings: Settings,
                                                    feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull("E1,5,1.00\n")
    await pool.execute("UPDATE inventory_feed_variants SET inventory_quantity = 42, "
                       "inventory_quantity_override = 'manual'")
    run = await f.pull("E1,7,2.00\n")
    got = (await f.items())["E1"]
    assert (got["inventory_quantity"], got["retail_price"]) == (42, Decimal("2.00"))
    assert run["updated"] == 1  # the price still moved
    await f.pull("E1,7,2.00\n")
    assert (await f.items())["E1"]["inventory_quantity"] == 42
    await pool.execute("UPDATE inventory_feed_variants SET inventory_quantity_override = 'none'")
    await f.pull("E1,7,2.00\n")
    assert (await f.items())["E1"]["inventory_quantity"] == 7


async def test_history_records_quantity_and_price_changes(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    # a feed of four items: one missing is 25%, over the breaker's default share
    await pool.execute("UPDATE inventory_feeds SET fetch_cleanup = 'enabled', "
                       "breaker_max_zeroed_share = 0.5 WHERE id = $1", f.id)
    first = await f.pull("E1,5,1.00\nE2,5,1.00\nE3,5,1.00\nE4,5,1.00\n")
    second = await f.pull("E1,6,1.00\nE2,5,2.50\nE3,5,1.00\n")  # E4 missing: zeroed
    rows = await pool.fetch(
        "SELECT v.external_id, u.run_id, u.action_type, u.old_quantity, u.new_quantity, "
        "u.old_retail_price, u.new_retail_price FROM variant_inventory_updates u "
        "JOIN inventory_feed_variants v ON v.id = u.inventory_feed_variant_id "
        "WHERE u.inventory_feed_id = $1 ORDER BY v.external_id", f.id)
    assert first["inserted"] == 4
    assert [tuple(r.values()) for r in rows] == [
        ("E1", second["id"], "update", 5, 6, Decimal("1.00"), Decimal("1.00")),
        ("E2", second["id"], "update", 5, 5, Decimal("1.00"), Decimal("2.50")),
        ("E4", second["id"], "cleanup", 5, 0, Decimal("1.00"), Decimal("1.00")),
    ]


async def test_history_can_be_switched_off(pool: asyncpg.Pool, settings: Settings,
                                           feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    off = replace(settings, item_history=False)
    await f.pull("E1,5,1.00\n", settings=off)
    await f.pull("E1,6,1.00\n", settings=off)
    assert await pool.fetchval("SELECT count(*) FROM variant_inventory_updates") == 0
