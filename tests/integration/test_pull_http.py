"""Pulls of CSV feeds over HTTP into the real Postgres, through the whole bulk core."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import asyncpg

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

HEADER = "external_id,vendor_sku,barcode,name,retail_price,compare_at_price,qty,grams\n"


def csv_rows(n: int, start: int = 0, qty: int = 5) -> str:
    return "".join(
        f"E{i},SKU{i},{10**11 + i},Item {i},{i}.50,,{qty},{i % 7}\n"
        for i in range(start, start + n)
    )


async def test_first_pull_inserts_every_row(pool: asyncpg.Pool, settings: Settings,
                                            feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.csv", (HEADER + csv_rows(50)).encode())
    feed_id = await feeds.make_feed(pool, url)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["inserted"], run["updated"], run["unchanged"]) == (50, 50, 0, 0)
    assert run["bytes"] == len(HEADER + csv_rows(50))
    got = await feeds.items(pool, feed_id)
    assert len(got) == 50
    e7 = got["E7"]
    assert e7["vendor_sku"] == "SKU7"
    assert e7["barcode"] == str(10**11 + 7)
    assert e7["retail_price"] == Decimal("7.50")
    assert e7["compare_at_price"] is None
    assert e7["inventory_quantity"] == 5
    assert e7["grams"] == Decimal(0)
    assert e7["last_fetched_at"] is not None
    for phase in ("stream_s", "merge_s", "parse_s", "total_s"):
        assert phase in run["timings"]


async def test_second_pull_updates_changed_rows_and_leaves_the_rest_unwritten(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.csv", (HEADER + csv_rows(20)).encode())
    feed_id = await feeds.make_feed(pool, url)
    await feeds.pull_once(pool, settings, feed_id)
    before = await feeds.items(pool, feed_id)
    changed = csv_rows(20).replace("E3,SKU3,100000000003,Item 3,3.50,,5,",
                                   "E3,SKU3,100000000003,Item 3,3.75,,0,")
    feed_server.add("/feed.csv", (HEADER + changed + csv_rows(2, start=100)).encode())
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["inserted"], run["updated"], run["unchanged"]) == (2, 1, 19)
    after = await feeds.items(pool, feed_id)
    assert after["E3"]["retail_price"] == Decimal("3.75")
    assert after["E3"]["inventory_quantity"] == 0
    assert after["E3"]["inventory_updated_at"] > before["E3"]["inventory_updated_at"]
    # Unchanged rows were not rewritten: same row version, same updated_at.
    assert after["E4"]["updated_at"] == before["E4"]["updated_at"]
    xmins = await pool.fetch(
        "SELECT external_id, xmin::text AS x FROM inventory_feed_variants WHERE external_id IN "
        "('E4', 'E5')")
    assert len({r["x"] for r in xmins}) == 1  # both still carry the first run's xmin


async def test_duplicate_keys_last_occurrence_wins(pool: asyncpg.Pool, settings: Settings,
                                                   feed_server: FeedServer) -> None:
    body = HEADER + "A,s1,,first,1.00,,1,0\nB,s2,,b,2.00,,2,0\nA,s1,,last,1.00,,9,0\n"
    feed_id = await feeds.make_feed(pool, feed_server.add("/d.csv", body.encode()))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["inserted"], run["duplicates"], run["rows_read"]) == (2, 1, 3)
    got = await feeds.items(pool, feed_id)
    assert got["A"]["name"] == "last"
    assert got["A"]["inventory_quantity"] == 9


async def test_bad_rows_become_rejects_and_the_rest_lands(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    body = (HEADER
            + "A,s,,ok,1.00,,3,0\n"
            + "B,s,,bad qty,1.00,,lots,0\n"
            + ",s,,no id,1.00,,3,0\n"
            + "C,s,,too many,1.00,,3,0,extra\n"
            + "D,s,,too few\n"
            + "E,s,,price text,9.99 euros,,3,0\n"
            + "F,s,,rounded,1.00,,2.5,0\n")
    feed_id = await feeds.make_feed(pool, feed_server.add("/r.csv", body.encode()))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded"
    assert (run["rows_read"], run["inserted"], run["rejected"]) == (7, 2, 5)
    got = await feeds.items(pool, feed_id)
    assert set(got) == {"A", "F"}
    assert got["F"]["inventory_quantity"] == 3
    rej = await feeds.rejects(pool, run["id"])
    assert [r["position"] for r in rej] == [3, 4, 5, 6, 7]
    reasons = [r["reason"] for r in rej]
    assert "whole number" in reasons[0]
    assert "externalId is blank" in reasons[1]
    assert "expected 8 columns, found 9" in reasons[2]
    assert "expected 8 columns, found 4" in reasons[3]
    assert "retailPrice" in reasons[4]
    assert rej[0]["raw"] == "B,s,,bad qty,1.00,,lots,0"


async def test_file_without_header_maps_by_index(pool: asyncpg.Pool, settings: Settings,
                                                 feed_server: FeedServer) -> None:
    body = "X1;12;Widget\nX2;0;Gadget\n"
    mapping = {"fields": {"externalId": 0, "inventoryQuantity": 1, "name": 2}}
    feed_id = await feeds.make_feed(pool, feed_server.add("/n.csv", body.encode()),
                                    csv_has_header=False, delimiter=";", mapping=mapping)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["inserted"] == 2, run["error"]
    got = await feeds.items(pool, feed_id)
    assert (got["X1"]["inventory_quantity"], got["X1"]["name"]) == (12, "Widget")


async def test_decimal_comma_and_quoted_newlines_and_crlf(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    body = ('Item ID;Stock;Price;Title\r\n'
            '"A";"3";"1.234,50";"two\r\nlines"\r\n'
            'B;4,6;9,99;"semi;colon ""quoted"""\r\n')
    mapping = {"fields": {"externalId": "Item ID", "inventoryQuantity": "Stock",
                          "retailPrice": "Price", "name": "Title"}}
    feed_id = await feeds.make_feed(pool, feed_server.add("/c.csv", body.encode()),
                                    delimiter=";", decimal_notation="comma", mapping=mapping)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["inserted"] == 2, run["error"]
    got = await feeds.items(pool, feed_id)
    assert got["A"]["retail_price"] == Decimal("1234.50")
    assert got["A"]["name"] == "two\r\nlines"
    assert got["B"]["inventory_quantity"] == 5
    assert got["B"]["retail_price"] == Decimal("9.99")
    assert got["B"]["name"] == 'semi;colon "quoted"'


async def test_unmapped_attributes_keep_their_stored_values(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/full.csv",
                                                          (HEADER + csv_rows(3)).encode()))
    await feeds.pull_once(pool, settings, feed_id)
    feed_server.add("/qty.csv", b"external_id,qty\nE1,77\n")
    run = await feeds.pull_once(pool, settings, feed_id, feed_server.url("/qty.csv"))
    assert (run["updated"], run["unchanged"]) == (1, 0)
    got = await feeds.items(pool, feed_id)
    assert got["E1"]["inventory_quantity"] == 77
    assert got["E1"]["name"] == "Item 1"
    assert got["E1"]["retail_price"] == Decimal("1.50")


async def test_basic_auth_from_the_url(pool: asyncpg.Pool, settings: Settings,
                                       feed_server: FeedServer) -> None:
    feed_server.add("/private.csv", (HEADER + csv_rows(3)).encode(), auth=("bob", "s3cr3t"))
    feed_id = await feeds.make_feed(pool, feed_server.url("/private.csv", "bob", "s3cr3t"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 3
    assert "s3cr3t" not in run["source"]
    assert run["source"] == feed_server.url("/private.csv", "bob", "***")


async def test_a_large_file_streams_through_many_batches(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    n = 30_000
    url = feed_server.add("/big.csv", (HEADER + csv_rows(n)).encode(), chunk=4096)
    feed_id = await feeds.make_feed(pool, url)
    run = await feeds.pull_once(pool, replace(settings, copy_batch_rows=1000), feed_id)
    assert (run["inserted"], run["rejected"]) == (n, 0)
    assert await pool.fetchval("SELECT count(*) FROM inventory_feed_variants") == n


async def test_deleting_a_store_variant_unlinks_its_items(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    body = (HEADER + csv_rows(3)).encode()
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", body))
    await feeds.pull_once(pool, settings, feed_id)
    vid = await pool.fetchval("INSERT INTO variants (sku) VALUES ('SKU1') RETURNING id")
    await pool.execute("UPDATE inventory_feed_variants SET variant_id = $1 "
                       "WHERE external_id IN ('E1', 'E2')", vid)
    linked = await feeds.items(pool, feed_id)
    assert [linked[k]["variant_id"] for k in ("E0", "E1", "E2")] == [None, vid, vid]
    await pool.execute("DELETE FROM variants WHERE id = $1", vid)
    got = await feeds.items(pool, feed_id)
    assert [got[k]["variant_id"] for k in ("E0", "E1", "E2")] == [None, None, None]
