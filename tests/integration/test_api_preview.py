"""GET /api/inventory-feeds/:id/preview.json against a real `feed-worker api` process and a
real HTTP server serving the feed's file: the head of the file, mapped, nothing written;
scoped like every feed route."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.support import feeds
from tests.support.apiprocess import ApiProcess, Client, error, feed, provider
from worker.api import tokens

SECRET = "s3cret-of-the-preview"
CSV = b"external_id,qty,name,retail_price\nA1,5,Chair,19.99\nA2,1 in stock,Table,249.00\n" \
      b"A3,12,Lamp,9.50\nA4,7,Desk,99.00\n"


async def test_a_feeds_head_is_previewed_over_http_and_nothing_is_written(
        api: ApiProcess, admin: Client, pool: asyncpg.Pool, feed_server: Any) -> None:
    feed_server.add("/stock.csv", CSV)
    url = feed_server.url("/stock.csv", "acme", SECRET)
    p = await provider(admin)
    f = await feed(admin, p, resourceType="ftp_csv", resourceLocation=url)
    status, got, _ = await admin.call("GET", f"/api/inventory-feeds/{f['id']}/preview.json"
                                             "?rows=3")
    assert status == 200, got
    assert (got["feedId"], got["format"], got["ok"]) == (f["id"], "csv", True)
    assert got["header"] == ["external_id", "qty", "name", "retail_price"]
    assert [r["position"] for r in got["rows"]] == [2, 3, 4]
    assert got["rows"][0]["values"]["externalId"] == "A1"
    assert got["rows"][0]["values"]["inventoryQuantity"] == "5"
    assert "inventoryQuantity" in got["rows"][1]["reject"]
    quantity = next(c for c in got["coverage"] if c["attribute"] == "inventoryQuantity")
    assert (quantity["source"], quantity["matched"], quantity["sampled"]) == ("qty", 3, 3)
    assert SECRET not in str(got)
    assert got["source"] == url.replace(SECRET, "***")
    assert await feeds.items(pool, f["id"]) == {}
    assert await pool.fetchval("SELECT count(*) FROM feed_runs") == 0

    # A mapping that cannot work: 200 with ok false and the problem.
    bad = await feed(admin, p, resourceType="ftp_csv", resourceLocation=url,
                     mapping={"fields": {"externalId": "external_id", "name": "title"}})
    status, got, _ = await admin.call("GET", f"/api/inventory-feeds/{bad['id']}/preview.json")
    assert (status, got["ok"]) == (200, False), got
    assert any("title" in problem for problem in got["problems"])

    # Another provider's feed is not found; a pushed feed has no file; rows is checked.
    other = admin.as_(await tokens.create(pool, await provider(admin, "Other")))
    status, got, _ = await other.call("GET", f"/api/inventory-feeds/{f['id']}/preview.json")
    assert status == 404
    error(got, "not_found")
    pushed = await feed(admin, p)
    status, got, _ = await admin.call("GET",
                                      f"/api/inventory-feeds/{pushed['id']}/preview.json")
    assert status == 409
    error(got, "not_pullable")
    status, got, _ = await admin.call("GET", f"/api/inventory-feeds/{f['id']}/preview.json"
                                             "?rows=5000")
    assert status == 400
    error(got, "bad_query")

    # The file cannot be read: 502, the password masked.
    gone = await feed(admin, p, resourceType="ftp_csv",
                      resourceLocation=feed_server.url("/missing.csv", "acme", SECRET))
    status, got, _ = await admin.call("GET", f"/api/inventory-feeds/{gone['id']}/preview.json")
    assert status == 502, got
    assert SECRET not in error(got, "feed_unreadable")["message"]
    assert SECRET not in api.log_text()
