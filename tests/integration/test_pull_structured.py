"""XML and JSON feeds pulled end to end, and the JSON conformance suite as feeds."""

from __future__ import annotations

import gzip
from decimal import Decimal

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.corpus import CORPUS
from tests.support.feedserver import FeedServer
from worker.settings import Settings

SUITE = CORPUS / "json-test-suite"

MERCHANT = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">
<channel><title>Acme</title>
<item><g:id>M1</g:id><title>Lamp &amp; shade</title><g:price>105.29 USD</g:price>
  <g:availability>in stock</g:availability><g:gtin>00012345678905</g:gtin></item>
<item><g:id>M2</g:id><title>Chair</title><g:price>49.00 USD</g:price>
  <g:availability>out of stock</g:availability></item>
<item><g:id>M3</g:id><title>Desk</title><g:price>cheap</g:price>
  <g:availability>in stock</g:availability></item>
</channel></rss>"""

MERCHANT_MAPPING = {
    "record": "/rss/channel/item",
    "namespaces": {"g": "http://base.google.com/ns/1.0"},
    "fields": {"externalId": "g:id", "name": "title", "retailPrice": "g:price",
               "inventoryQuantity": "g:availability", "barcode": "g:gtin"},
    "values": {"inventoryQuantity": {"in stock": 100, "out of stock": 0}},
}


@pytest.mark.parametrize("packing", ["plain", "gzip"])
async def test_google_merchant_rss(pool: asyncpg.Pool, settings: Settings,
                                   feed_server: FeedServer, packing: str) -> None:
    body = MERCHANT if packing == "plain" else gzip.compress(MERCHANT)
    feed_id = await feeds.make_feed(pool, feed_server.add("/merchant.xml", body),
                                    resource_type="xml", mapping=MERCHANT_MAPPING)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (2, 1)
    got = await feeds.items(pool, feed_id)
    m1 = got["M1"]
    assert (m1["name"], m1["retail_price"], m1["currency"]) == ("Lamp & shade",
                                                                Decimal("105.29"), "USD")
    assert (m1["inventory_quantity"], got["M2"]["inventory_quantity"]) == (100, 0)
    assert m1["barcode"] == "00012345678905"
    [reject] = await feeds.rejects(pool, run["id"])
    assert reject["position"] == 3
    assert "retailPrice" in reject["reason"]


async def test_xml_with_entities_fails_without_expanding_them(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
              + b"".join(b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&" + bytes([97 + i])
                                                                   + b";") * 10)
                         for i in range(8))
              + b']><rss><channel><item><id>&i;</id></item></channel></rss>')
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/laughs.xml", laughs), resource_type="xml",
        mapping={"record": "/rss/channel/item", "fields": {"externalId": "id"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "entit" in run["error"].lower()
    assert await feeds.items(pool, feed_id) == {}


async def test_json_api_with_pages(pool: asyncpg.Pool, settings: Settings,
                                   feed_server: FeedServer) -> None:
    page1 = {"data": {"items": [{"id": "J1", "stock": {"available": 3}, "price": 9.5},
                                {"id": "J2", "stock": {"available": 0}, "price": "1,234.50"}]},
             "links": {"next": "/api/page2"}}
    page2 = {"data": {"items": [{"id": "J3", "stock": {"available": 7.6}, "price": 1},
                                {"id": "J1", "stock": {"available": 4}, "price": 9.5}]},
             "links": {"next": None}}
    feed_server.add("/api/page1", orjson.dumps(page1), content_type="application/json")
    feed_server.add("/api/page2", orjson.dumps(page2), content_type="application/json")
    feed_id = await feeds.make_feed(
        pool, feed_server.url("/api/page1"), resource_type="json",
        mapping={"record": "data.items", "next": "links.next",
                 "fields": {"externalId": "id", "inventoryQuantity": "stock.available",
                            "retailPrice": "price"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["duplicates"]) == (3, 1)
    assert orjson.loads(run["details"])["pages"] == 2
    got = await feeds.items(pool, feed_id)
    assert {k: v["inventory_quantity"] for k, v in got.items()} == {"J1": 4, "J2": 0, "J3": 8}
    assert got["J2"]["retail_price"] == Decimal("1234.50")


async def test_ndjson(pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    body = b'{"externalId": "N1", "inventoryQuantity": 2}\n{"externalId": "N2"}\n'
    feed_id = await feeds.make_feed(pool, feed_server.add("/items.ndjson", body),
                                    resource_type="json",
                                    mapping={"fields": {"externalId": "externalId",
                                                        "inventoryQuantity":
                                                            "inventoryQuantity"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["inserted"] == 2, run["error"]


async def test_every_rejected_json_document_fails_its_run_and_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    files = sorted(SUITE.glob("n_*.json"))
    assert len(files) > 150, SUITE
    feed_id = await feeds.make_feed(pool, feed_server.add("/seed.json",
                                                          b'[{"externalId": "S"}]'),
                                    resource_type="json")
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "succeeded"
    before = await feeds.table_state(pool)
    for path in files:
        url = feed_server.add(f"/{path.name}", path.read_bytes(),
                              content_type="application/json").replace("#", "%23")
        run = await feeds.pull_once(pool, settings, feed_id, url)
        assert run["status"] == "failed", path.name
        assert "JSON" in run["error"], (path.name, run["error"])
    assert await feeds.table_state(pool) == before


async def test_accepted_json_documents_raise_no_parse_error(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="json")
    for path in sorted(SUITE.glob("y_*.json")):
        url = feed_server.add(f"/{path.name}", path.read_bytes()).replace("#", "%23")
        run = await feeds.pull_once(pool, settings, feed_id, url)
        assert "malformed JSON" not in (run["error"] or ""), (path.name, run["error"])
