"""The marketplace's rules on the push path: connect, overrides, history, daily limit."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import orjson

from tests.support import feeds
from worker.pipeline.push import Envelope, apply_group
from worker.settings import Settings


def envelope(feed_id: int, *variants: dict[str, object]) -> Envelope:
    return Envelope(orjson.dumps({"feedId": feed_id, "variants": list(variants)}))


async def push_feed(pool: asyncpg.Pool, **columns: object) -> int:
    return await feeds.make_feed(pool, None, resource_type="webhook", **columns)


async def test_pushed_items_connect_by_sku_and_barcode(pool: asyncpg.Pool,
                                                       settings: Settings) -> None:
    v1 = await pool.fetchval("INSERT INTO variants (sku) VALUES ('S1') RETURNING id")
    v2 = await pool.fetchval("INSERT INTO variants (barcode) VALUES ('4006381333931') "
                             "RETURNING id")
    await pool.execute("INSERT INTO variants (sku) VALUES ('TWICE'), ('TWICE')")
    feed_id = await push_feed(pool, automatically_connect_by_barcode=True)
    await apply_group(pool, settings, [envelope(
        feed_id, {"externalId": "A", "vendorSku": "S1"},
        {"externalId": "B", "barcode": "04006381333931"},
        {"externalId": "C", "vendorSku": "TWICE"})])
    got = await feeds.items(pool, feed_id)
    assert {k: v["variant_id"] for k, v in got.items()} == {"A": v1, "B": v2, "C": None}
    run = await pool.fetchrow("SELECT connected, ambiguous FROM feed_runs WHERE kind = 'push'")
    assert run is not None
    assert (run["connected"], run["ambiguous"]) == (2, 1)


async def test_push_history_override_and_return_of_a_missing_item(
        pool: asyncpg.Pool, settings: Settings) -> None:
    feed_id = await push_feed(pool)
    await apply_group(pool, settings, [envelope(
        feed_id, {"externalId": "A", "inventoryQuantity": 5, "retailPrice": 1},
        {"externalId": "B", "inventoryQuantity": 5})])
    await pool.execute("UPDATE inventory_feed_variants SET inventory_quantity_override = "
                       "'manual', inventory_quantity = 40 WHERE external_id = 'B'")
    await pool.execute("UPDATE inventory_feed_variants SET missing_since = now(), "
                       "inventory_quantity = 0 WHERE external_id = 'A'")
    await apply_group(pool, settings, [envelope(
        feed_id, {"externalId": "A", "inventoryQuantity": 7, "retailPrice": 2},
        {"externalId": "B", "inventoryQuantity": 9})])
    got = await feeds.items(pool, feed_id)
    assert (got["A"]["inventory_quantity"], got["A"]["missing_since"]) == (7, None)
    assert got["B"]["inventory_quantity"] == 40  # the manual override wins
    run_id = await pool.fetchval("SELECT id FROM feed_runs WHERE kind = 'push'")
    history = await pool.fetch(
        "SELECT run_id, old_quantity, new_quantity, old_retail_price, new_retail_price "
        "FROM variant_inventory_updates ORDER BY id")
    assert [tuple(r.values()) for r in history] == [
        (run_id, 0, 7, Decimal(1), Decimal(2))]


async def test_push_daily_limit_holds_items_as_rejects(pool: asyncpg.Pool,
                                                       settings: Settings) -> None:
    feed_id = await push_feed(pool)
    await pool.execute("UPDATE dropship_providers SET daily_sku_limit = 2")
    await apply_group(pool, settings, [envelope(
        feed_id, *({"externalId": f"E{i}", "inventoryQuantity": i} for i in range(4)))])
    assert sorted(await feeds.items(pool, feed_id)) == ["E0", "E1"]
    run = await pool.fetchrow("SELECT id, inserted, skipped FROM feed_runs WHERE kind = 'push'")
    assert run is not None
    assert (run["inserted"], run["skipped"]) == (2, 2)
    held = await feeds.rejects(pool, run["id"])
    assert sorted(((orjson.loads(r["raw"]), r["reason"]) for r in held),
                  key=lambda h: str(h[0]["externalId"])) == [
        ({"externalId": "E2", "inventoryQuantity": 2}, "daily limit"),
        ({"externalId": "E3", "inventoryQuantity": 3}, "daily limit")]
    # the two written today may change again the same day
    await apply_group(pool, settings, [envelope(feed_id, {"externalId": "E0",
                                                          "inventoryQuantity": 9})])
    assert (await feeds.items(pool, feed_id))["E0"]["inventory_quantity"] == 9
