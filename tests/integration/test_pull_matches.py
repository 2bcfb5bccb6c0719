"""No silent NULLs: a mapped path that matches nothing fails its run and changes nothing, a
sparse one is a warning, a first pull without records fails, and what a feed does not name
still maps by the template names (and is not written where no record has it)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from tests.integration.test_daemon import run_completed_events
from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.publish import publish_pull
from worker.settings import Settings

G = "http://base.google.com/ns/1.0"
MERCHANT = f"""<?xml version="1.0"?>
<rss xmlns:g="{G}" version="2.0"><channel>
<item><g:id>A</g:id><g:title>Lamp</g:title><g:price>10.00 USD</g:price></item>
<item><g:id>B</g:id><g:title>Desk</g:title><g:price>99.00 USD</g:price></item>
</channel></rss>""".encode()
NS = {"g": G}


def details(run: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(run["details"])
    return parsed


async def test_an_xpath_without_its_namespace_fails_and_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """The README's old Google Merchant example mapped name to `title`; the feed's names
    are `g:title`: every name was NULL and the run succeeded."""
    url = feed_server.add("/merchant.xml", MERCHANT)
    good = {"record": "/rss/channel/item", "namespaces": NS,
            "fields": {"externalId": "g:id", "name": "g:title", "retailPrice": "g:price"}}
    feed_id = await feeds.make_feed(pool, url, resource_type="xml", mapping=good)
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "succeeded"
    before = await feeds.table_state(pool)
    bad = {**good, "fields": {**good["fields"], "name": "title"}}  # type: ignore[dict-item]
    await pool.execute("UPDATE inventory_feeds SET mapping = $1 WHERE id = $2",
                       orjson.dumps(bad).decode(), feed_id)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert run["error"].startswith("name (XPath 'title') matched no record of 2: names "
                                   "without a prefix are in no namespace"), run["error"]
    assert "g:title" in run["error"]
    matched = details(run)["matched"]
    assert (matched["externalId"], matched["name"], matched["retailPrice"]) == (2, 0, 2)
    assert await feeds.table_state(pool) == before
    assert {i["name"] for i in (await feeds.items(pool, feed_id)).values()} == {"Lamp", "Desk"}


async def test_typos_in_a_json_mapping_fail_and_change_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    body = orjson.dumps({"items": [{"id": f"J{i}", "stock": i, "price": "9.50"}
                                   for i in range(194)]})
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/api.json", body, content_type="application/json"),
        resource_type="json",
        mapping={"record": "items", "fields": {"externalId": "id", "inventoryQuantity": "stok",
                                               "retailPrice": "prize"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "inventoryQuantity (path 'stok') matched no record of 194" in run["error"]
    assert "retailPrice (path 'prize') matched no record of 194" in run["error"]
    assert await feeds.items(pool, feed_id) == {}


async def test_a_first_pull_without_records_at_the_record_path_fails(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/m.xml", MERCHANT), resource_type="xml",
        fetch_cleanup="enabled",
        mapping={"record": "/rss/channel/items", "namespaces": NS,
                 "fields": {"externalId": "g:id"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert run["error"] == ("no records at /rss/channel/items (mapping.record): no element "
                            "has that path from the root")
    assert run["rows_read"] == 0
    assert await feeds.items(pool, feed_id) == {}
    empty = orjson.dumps({"data": {"items": []}})
    json_id = await feeds.make_feed(pool, feed_server.add("/e.json", empty),
                                    resource_type="json", mapping={"record": "data.items"})
    run = await feeds.pull_once(pool, settings, json_id)
    assert run["status"] == "failed"
    assert run["error"].startswith("no records at data.items (mapping.record)")


async def test_a_sparse_attribute_is_a_warning(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    rows = "".join(f"S{i},{i},{'Lamp' if i < 3 else ''}\n" for i in range(10))
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/s.csv", f"code,stock,title\n{rows}".encode()),
        mapping={"fields": {"externalId": "code", "inventoryQuantity": "stock",
                            "name": "title"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert details(run)["matched"] == {"externalId": 10, "inventoryQuantity": 10, "name": 3}
    assert details(run)["warnings"] == [
        "name (column 'title') has a value in only 3 of 10 records (30%; "
        "FEED_WORKER_MIN_ATTRIBUTE_MATCH_SHARE is 0.5)"]
    quiet = replace(settings, min_attribute_match_share=0.0)
    run = await feeds.pull_once(pool, quiet, feed_id)
    assert "warnings" not in details(run)


async def test_warnings_reach_the_run_completed_event(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    body = orjson.dumps([{"sku": "D1", "qty": 1, "name": "Lamp"}, {"sku": "D2", "qty": 2},
                         {"sku": "D3", "qty": 3}])
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/d.json", body, content_type="application/json"),
        resource_type="json",
        mapping={"fields": {"externalId": "sku", "inventoryQuantity": "qty", "name": "name"}})
    async with run_completed_events(settings) as next_event:
        await publish_pull(settings, feed_id)
        event = await next_event()
    assert event["status"] == "succeeded", event["error"]
    assert event["warnings"] == [
        "name (path 'name') has a value in only 1 of 3 records (33%; "
        "FEED_WORKER_MIN_ATTRIBUTE_MATCH_SHARE is 0.5)"]
    assert event["matched"]["name"] == 1


async def test_naming_one_column_keeps_the_template_names_of_the_others(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """`externalId: "sku"` used to leave vendor_sku NULL, so auto-connect by SKU did
    nothing."""
    feed_id = await feeds.make_feed(pool, feed_server.add("/c.csv", b"sku,qty,price\nC1,4,2.5\n"),
                                    mapping={"fields": {"externalId": "sku"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    item = (await feeds.items(pool, feed_id))["C1"]
    assert (item["vendor_sku"], item["inventory_quantity"]) == ("C1", 4)
    only = await feeds.make_feed(pool, feed_server.url("/c.csv"),
                                 mapping={"fields": {"externalId": "sku"}, "auto": False})
    run = await feeds.pull_once(pool, settings, only)
    assert run["status"] == "succeeded", run["error"]
    item = (await feeds.items(pool, only))["C1"]
    assert (item["vendor_sku"], item["inventory_quantity"]) == (None, None)


async def test_json_fields_compose_with_the_template_names(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    first = orjson.dumps([{"code": "K1", "inventoryQuantity": 5, "name": "Lamp",
                           "retailPrice": "3.50"}])
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/k1.json", first, content_type="application/json"),
        resource_type="json", mapping={"fields": {"externalId": "code"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    item = (await feeds.items(pool, feed_id))["K1"]
    assert (item["inventory_quantity"], item["name"]) == (5, "Lamp")
    # A later file without `name` or prices: what no record has is not written.
    later = orjson.dumps([{"code": "K1", "inventoryQuantity": 2}])
    url = feed_server.add("/k2.json", later, content_type="application/json")
    run = await feeds.pull_once(pool, settings, feed_id, url)
    assert run["status"] == "succeeded", run["error"]
    assert "name" in details(run)["unwritten"]
    item = (await feeds.items(pool, feed_id))["K1"]
    assert (item["inventory_quantity"], item["name"], item["retail_price"]) == (
        2, "Lamp", Decimal("3.50"))
