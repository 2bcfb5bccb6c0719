"""A feed's value rules (mapping.rules) on a real pull over HTTP and a real push group: the
same rules give the same stored values, rejects and per-rule counts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from tests.integration.test_daemon import run_completed_events
from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.oneshot import dry_summary, rules_line, summary
from worker.pipeline.push import Envelope, Fate, apply_group
from worker.publish import publish_pull
from worker.settings import Settings

RULES: dict[str, Any] = {
    "price": {"markupPercent": 20, "rounding": ".99", "min": 5},
    "quantity": {"sum": {"north": "Stock N", "south": "Stock S", "east": "Stock E"},
                 "locations": True, "below": 2, "buffer": 1, "cap": 100},
    "barcode": {"gtin": "reject"},
}

# A decimal-comma feed as suppliers write it: symbols, thousands, a blank warehouse, an
# Excel-mangled barcode and a wrong check digit.
CSV = ("id;ean;price;Stock N;Stock S;Stock E\n"
       "A1;4006381333931;45,00 €;1;2;3\n"
       "A2;96385074;1.234,50;;;1\n"
       "A3;036000291452;€ 1,00;500;0;0\n"
       "A4;3,65275E+11;10,00;1;1;1\n"
       "A5;4006381333932;10,00;1;1;1\n"
       "A6;;;0;0;\n")

# The same items pushed (decimal notation, numbers or texts, the warehouses as keys).
VARIANTS: list[dict[str, Any]] = [
    {"externalId": "A1", "barcode": "4006381333931", "retailPrice": "45.00",
     "Stock N": 1, "Stock S": "2", "Stock E": 3},
    {"externalId": "A2", "barcode": "96385074", "retailPrice": "$1,234.50", "Stock E": 1},
    {"externalId": "A3", "barcode": "036000291452", "retailPrice": 1,
     "Stock N": 500, "Stock S": 0, "Stock E": 0},
    {"externalId": "A4", "barcode": "3.65275E+11", "retailPrice": 10, "Stock N": 1,
     "Stock S": 1, "Stock E": 1},
    {"externalId": "A5", "barcode": "4006381333932", "retailPrice": "10.00", "Stock N": 1,
     "Stock S": 1, "Stock E": 1},
    {"externalId": "A6", "barcode": None, "retailPrice": None, "Stock N": 0, "Stock S": 0,
     "Stock E": None},
]

EXPECTED = {  # external id -> (barcode, retail price, quantity, locations)
    "A1": ("4006381333931", Decimal("54.99"), 5, {"north": 1, "south": 2, "east": 3}),
    "A2": ("96385074", Decimal("1481.99"), 0, {"east": 1}),          # 1 is below 2
    "A3": ("036000291452", Decimal(5), 100, {"north": 500, "south": 0, "east": 0}),
    "A6": (None, None, 0, {"north": 0, "south": 0}),
}
REASONS = {
    "A4": "barcode: '3,65275E+11' is in E-notation: a spreadsheet rounded the number and "
          "its digits are lost",
    "A5": "barcode: '4006381333932' has a wrong check digit (GTIN-13: 1 expected)",
}
COUNTS = {"price.markup": 5, "price.rounding": 5, "price.min": 1, "quantity.sum": 6,
          "quantity.below": 1, "quantity.buffer": 4, "quantity.cap": 1,
          "barcode.e_notation": 1, "barcode.gtin": 1}


def stored(items: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {x: (i["barcode"], i["retail_price"], i["inventory_quantity"],
                orjson.loads(i["extra"])["locations"] if i["extra"] else None)
            for x, i in items.items()}


def details(run: dict[str, Any]) -> dict[str, Any]:
    d = run["details"]
    return orjson.loads(d) if isinstance(d, str) else dict(d)


async def rules_feed(pool: asyncpg.Pool, feed_server: FeedServer) -> int:
    """A decimal-comma feed of CSV, served over HTTP, with RULES."""
    url = feed_server.add(f"/rules-{len(feed_server.routes)}.csv", CSV.encode())
    return await feeds.make_feed(
        pool, url, decimal_notation="comma", delimiter=";",
        mapping={"fields": {"externalId": "id", "barcode": "ean", "retailPrice": "price"},
                 "rules": RULES})


async def test_a_pull_applies_the_rules_and_counts_them(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await rules_feed(pool, feed_server)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["inserted"], run["rejected"]) == (6, 4, 2)
    assert stored(await feeds.items(pool, feed_id)) == EXPECTED
    rejects = await feeds.rejects(pool, run["id"])
    assert [(r["position"], r["reason"]) for r in rejects] == [
        (5, REASONS["A4"]), (6, REASONS["A5"])]
    assert details(run)["rules"] == COUNTS


async def test_the_rules_counts_reach_the_run_completed_event(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    feed_id = await rules_feed(pool, feed_server)
    async with run_completed_events(settings) as next_event:
        await publish_pull(settings, feed_id)
        event = await next_event()
    assert (event["status"], event["rejected"]) == ("succeeded", 2), event["error"]
    assert event["rules"] == COUNTS
    assert event["rowsSkipped"] == {}


async def test_a_push_with_the_same_rules_stores_the_same_values(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    pulled = await rules_feed(pool, feed_server)
    pull_run = await feeds.pull_once(pool, settings, pulled)
    pushed = await feeds.make_feed(pool, None, resource_type="webhook",
                                   mapping={"rules": RULES})
    # two messages: the second folds a later stock figure into A1 (later wins, then summed)
    first = [*VARIANTS[:1], {**VARIANTS[1], "Stock E": 7}, *VARIANTS[2:]]
    group = [Envelope(orjson.dumps({"feedId": pushed, "variants": first}), "r1"),
             Envelope(orjson.dumps({"feedId": pushed, "variants": [VARIANTS[1]]}), "r2")]
    await apply_group(pool, settings, group)
    assert [e.fate for e in group] == [Fate.APPLIED, Fate.APPLIED]
    got = stored(await feeds.items(pool, pushed))
    assert got == stored(await feeds.items(pool, pulled)) == EXPECTED
    run = await pool.fetchrow("SELECT * FROM feed_runs WHERE kind = 'push' AND "
                              "inventory_feed_id = $1", pushed)
    assert run is not None
    assert (run["inserted"], run["rejected"], run["duplicates"]) == (4, 2, 1)
    rejects = await pool.fetch("SELECT message_id, position, reason FROM feed_run_rejects "
                               "WHERE run_id = $1 ORDER BY position", run["id"])
    assert [(r["message_id"], r["position"], r["reason"]) for r in rejects] == [
        ("r1", 3, REASONS["A4"].replace("3,65275E+11", "3.65275E+11")),
        ("r1", 4, REASONS["A5"])]
    assert details(dict(run))["rules"] == details(pull_run)["rules"] == COUNTS
    # a second group adds to the minute's push run: the counts are summed
    again = [Envelope(orjson.dumps({"feedId": pushed, "variants": [VARIANTS[0]]}), "r3")]
    await apply_group(pool, settings, again)
    run = await pool.fetchrow("SELECT details FROM feed_runs WHERE id = $1", run["id"])
    assert run is not None
    assert details(dict(run))["rules"]["quantity.sum"] == COUNTS["quantity.sum"] + 1


async def test_rules_that_cannot_be_read_dead_letter_the_feeds_messages(
        pool: asyncpg.Pool, settings: Settings) -> None:
    broken = await feeds.make_feed(pool, None, resource_type="webhook",
                                   mapping={"rules": {"price": {"rounding": "up"}}})
    fine = await feeds.make_feed(pool, None, resource_type="webhook")
    group = [Envelope(orjson.dumps({"feedId": broken, "variants": VARIANTS[:1]}), "b1"),
             Envelope(orjson.dumps({"feedId": fine, "variants": VARIANTS[:1]}), "f1")]
    await apply_group(pool, settings, group)
    assert group[0].fate is Fate.DEAD
    assert group[0].reason.startswith(f"feed {broken}: mapping.rules.price.rounding 'up'")
    assert group[1].fate is Fate.APPLIED
    assert set(await feeds.items(pool, fine)) == {"A1"}
    assert await feeds.items(pool, broken) == {}


async def test_a_dry_run_shows_what_the_rules_would_do(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await rules_feed(pool, feed_server)
    outcome = await feeds.dry_run(pool, settings, feed_id)
    assert outcome.status == "dry-run", outcome.error
    assert outcome.report.details["rules"] == COUNTS
    shown = dry_summary(outcome)
    assert ("\nvalue rules: barcode.e_notation=1 barcode.gtin=1 price.markup=5 price.min=1 "
            "price.rounding=5 quantity.below=1 quantity.buffer=4 quantity.cap=1 "
            "quantity.sum=6") in shown
    assert await feeds.items(pool, feed_id) == {}
    run = await feeds.pull_once(pool, settings, feed_id)
    assert summary(run).endswith(shown[shown.index("\nvalue rules:"):])
    assert rules_line({"rules": {}}) == "\nvalue rules: nothing changed"
    assert rules_line({}) == ""


# A supplier's XML and JSON feeds with each item's stock split over warehouses.
STOCK_XML = b"""<?xml version="1.0"?>
<items>
  <item><id>W1</id><stock><wh code="n">3</wh><wh code="s">4</wh></stock></item>
  <item><id>W2</id><stock><wh code="s">7</wh></stock></item>
  <item><id>W3</id><stock/></item>
</items>"""
STOCK_JSON = orjson.dumps({"items": [
    {"id": "W1", "stock": {"north": 3, "south": "4"}},
    {"id": "W2", "stock": {"south": 7}},
    {"id": "W3", "stock": {}},
]})
STRUCTURED = {
    "xml": (STOCK_XML, "application/xml", {"record": "/items/item"},
            {"north": "stock/wh[@code='n']", "south": "stock/wh[@code='s']"}),
    "json": (STOCK_JSON, "application/json", {"record": "items"},
             {"north": "stock.north", "south": "stock.south"}),
}


async def stock_feed(pool: asyncpg.Pool, feed_server: FeedServer, resource_type: str,
                     quantity_rule: dict[str, Any]) -> int:
    """A feed of STRUCTURED's file of that type, with this quantity rule."""
    body, content_type, where, _ = STRUCTURED[resource_type]
    url = feed_server.add(f"/stock-{len(feed_server.routes)}.{resource_type}", body,
                          content_type=content_type)
    return await feeds.make_feed(pool, url, resource_type=resource_type, mapping={
        **where, "fields": {"externalId": "id"}, "rules": {"quantity": quantity_rule}})


@pytest.mark.parametrize("resource_type", ["xml", "json"])
async def test_an_xml_or_json_pull_sums_its_warehouses(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        resource_type: str) -> None:
    paths = STRUCTURED[resource_type][3]
    feed_id = await stock_feed(pool, feed_server, resource_type,
                               {"sum": paths, "locations": True, "buffer": 1})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    got = {x: (i["inventory_quantity"],
               orjson.loads(i["extra"]).get("locations") if i["extra"] else None)
           for x, i in (await feeds.items(pool, feed_id)).items()}
    assert got == {"W1": (6, {"north": 3, "south": 4}), "W2": (6, {"south": 7}),
                   "W3": (None, None)}
    assert details(run)["matched"]["inventoryQuantity (north)"] == 1
    assert details(run)["rules"] == {"quantity.sum": 2, "quantity.buffer": 2}


@pytest.mark.parametrize("resource_type", ["xml", "json"])
async def test_a_warehouse_path_that_matches_nothing_fails_the_run(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        resource_type: str) -> None:
    paths = STRUCTURED[resource_type][3]
    typo = {**paths, "east": "stock/wh[@code='e']" if resource_type == "xml" else "stock.east"}
    feed_id = await stock_feed(pool, feed_server, resource_type, {"sum": typo})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "inventoryQuantity (east)" in run["error"]
    assert "matched no record of 3" in run["error"]
    assert await feeds.items(pool, feed_id) == {}
