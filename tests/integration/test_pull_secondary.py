"""Two files, one feed: a catalogue joined with a stock file (mapping.secondary)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.errors import FeedError
from worker.feedmapping import parse_mapping
from worker.settings import Settings

CATALOGUE = "external_id,sku,name,price\n" + "".join(
    f"C{i},SKU{i},Item {i},{i}.50\n" for i in range(1, 6))
SECRET = "s3cret-stock"


def details(run: dict[str, Any]) -> dict[str, Any]:
    d = run["details"]
    return orjson.loads(d) if isinstance(d, str) else dict(d or {})


async def stock_feed(pool: asyncpg.Pool, server: FeedServer, **secondary: Any) -> int:
    return await feeds.make_feed(pool, mapping={
        "fields": {"vendorSku": "sku", "retailPrice": "price"},
        "secondary": {"url": server.url("/stock.csv", "u", SECRET), **secondary}})


async def test_a_stock_file_fills_its_columns_and_keeps_stored_values_where_it_has_no_row(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await stock_feed(pool, feed_server)
    stock = feed_server.add("/stock.csv", b"external_id,qty\nC1,10\nC2,20\nC3,30\nC9,90\n",
                            auth=("u", SECRET))
    assert stock.startswith("http://")
    run = await feeds.pull_once(pool, settings, feed_id,
                                feed_server.add("/catalogue.csv", CATALOGUE.encode()))
    assert (run["status"], run["inserted"]) == ("succeeded", 5), run["error"]
    second = details(run)["secondary"]
    assert (second["matched"], second["unmatched"], second["unmatched_secondary"]) == (3, 2, 1)
    assert second["rows_read"] == 4
    items = await feeds.items(pool, feed_id)
    assert {k: v["inventory_quantity"] for k, v in items.items()} == \
        {"C1": 10, "C2": 20, "C3": 30, "C4": None, "C5": None}
    assert items["C1"]["name"] == "Item 1"  # the catalogue's own columns
    # The next hour's stock file lacks C2: it keeps its stored quantity; C1 changes.
    feed_server.routes["/stock.csv"].body = b"external_id,qty\nC1,11\nC3,30\nC4,4\n"
    run = await feeds.pull_once(pool, settings, feed_id,
                                feed_server.add("/catalogue2.csv", CATALOGUE.encode()))
    assert (run["updated"], run["unchanged"]) == (2, 3), run["error"]
    items = await feeds.items(pool, feed_id)
    assert {k: v["inventory_quantity"] for k, v in items.items()} == \
        {"C1": 11, "C2": 20, "C3": 30, "C4": 4, "C5": None}
    assert SECRET not in orjson.dumps(details(run)).decode()


async def test_a_json_stock_file_joined_by_sku_with_a_bad_row(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await stock_feed(
        pool, feed_server, format="json", joinOn="vendorSku",
        mapping={"auto": False, "fields": {"vendorSku": "code", "inventoryQuantity": "n"}})
    stock = [{"code": "SKU1", "n": 7}, {"code": "SKU2", "n": "many"}, {"code": "SKU5", "n": 5},
             {"code": "SKU5", "n": 6}]
    feed_server.add("/stock.csv", orjson.dumps(stock), auth=("u", SECRET),
                    content_type="application/json")
    run = await feeds.pull_once(pool, settings, feed_id,
                                feed_server.add("/cat.csv", CATALOGUE.encode()))
    assert run["status"] == "succeeded", run["error"]
    assert run["rejected"] == 1
    (reject,) = await feeds.rejects(pool, run["id"])
    assert reject["reason"].startswith("second file: ")
    items = await feeds.items(pool, feed_id)
    assert {k: v["inventory_quantity"] for k, v in items.items()} == \
        {"C1": 7, "C2": None, "C3": None, "C4": None, "C5": 6}  # the last row of SKU5
    assert items["C1"]["vendor_sku"] == "SKU1"
    second = details(run)["secondary"]
    assert (second["join_on"], second["matched"], second["unmatched_secondary"]) == \
        ("vendorSku", 2, 0)


async def test_a_second_file_that_fails_fails_the_run_and_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await stock_feed(pool, feed_server)
    feed_server.add("/stock.csv", b"external_id,qty\nC1,1\n", auth=("u", SECRET))
    cat = feed_server.add("/cat.csv", CATALOGUE.encode())
    assert (await feeds.pull_once(pool, settings, feed_id, cat))["status"] == "succeeded"
    before = await feeds.table_state(pool)
    feed_server.add("/stock.csv", b"gone", status=404, auth=("u", SECRET))
    run = await feeds.pull_once(pool, settings, feed_id, cat)
    assert run["status"] == "failed"
    assert "404" in run["error"]
    assert SECRET not in run["error"]
    feed_server.add("/stock.csv", b"external_id,qty\n", auth=("u", SECRET))
    run = await feeds.pull_once(pool, settings, feed_id, cat)
    assert run["status"] == "failed"
    assert "second file" in run["error"]
    assert await feeds.table_state(pool) == before


@pytest.mark.parametrize(("secondary", "problem"), [
    ("stock.csv", "mapping.secondary must be an object"),
    ({"url": "stock.csv"}, "mapping.secondary.url"),
    ({"url": "http://h/s", "format": "xlsx"}, "mapping.secondary.format"),
    ({"url": "http://h/s", "joinOn": "barcode"}, "mapping.secondary.joinOn"),
    ({"url": "http://h/s", "joinOn": "vendorSku"}, "must name vendorSku"),
    ({"url": "http://h/s", "format": "xml", "mapping": {"fields": {"externalId": "id"}}},
     "mapping.secondary: "),
])
def test_a_bad_secondary_is_refused_with_the_reason(secondary: Any, problem: str) -> None:
    with pytest.raises(FeedError, match=problem.replace(".", r"\.")):
        parse_mapping({"secondary": secondary}, "ftp_csv")
