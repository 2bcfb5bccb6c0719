"""Google Sheets links pulled as their CSV export, against a local server that answers as
the export endpoint does (a redirect to the file)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

CSV = b"external_id,sku,qty,retail_price\nG1,S1,4,9.90\nG2,S2,0,19.90\n"


@pytest.fixture
def sheets(settings: Settings, feed_server: FeedServer) -> Settings:
    """Settings whose Sheets origin is the local server; its file at /usercontent/tab.csv."""
    feed_server.add("/usercontent/tab.csv", CSV)
    return replace(settings, sheets_origin=feed_server.url(""))


async def pulled(pool: asyncpg.Pool, settings: Settings, url: str,
                 **columns: Any) -> dict[str, Any]:
    feed_id = await feeds.make_feed(pool, url, **columns)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    items = await feeds.items(pool, feed_id)
    assert items["G2"]["retail_price"] is not None
    assert (items["G1"]["inventory_quantity"], str(items["G2"]["retail_price"])) == (4, "19.90")
    return run


async def test_an_edit_link_reads_its_tab_as_csv(pool: asyncpg.Pool, sheets: Settings,
                                                feed_server: FeedServer) -> None:
    feed_server.add("/spreadsheets/d/Doc-1/export", redirect=feed_server.url(
        "/usercontent/tab.csv"))
    run = await pulled(pool, sheets, feed_server.url("/spreadsheets/d/Doc-1/edit") + "#gid=7")
    assert run["inserted"] == 2
    assert feed_server.routes["/spreadsheets/d/Doc-1/export"].queries == ["format=csv&gid=7"]


async def test_a_tab_by_name_from_the_mapping(pool: asyncpg.Pool, sheets: Settings,
                                             feed_server: FeedServer) -> None:
    route = "/spreadsheets/d/Doc-2/gviz/tq"
    feed_server.add(route, CSV)
    await pulled(pool, sheets, feed_server.url("/spreadsheets/d/Doc-2/edit?usp=sharing"),
                 mapping={"sheet": "Stock"})
    assert feed_server.routes[route].queries == ["tqx=out:csv&sheet=Stock"]


async def test_a_link_published_to_the_web(pool: asyncpg.Pool, sheets: Settings,
                                          feed_server: FeedServer) -> None:
    route = "/spreadsheets/d/e/2PACX-9/pub"
    feed_server.add(route, redirect=feed_server.url("/usercontent/tab.csv"))
    await pulled(pool, sheets,
                 feed_server.url("/spreadsheets/d/e/2PACX-9/pubhtml?gid=3&single=true"))
    assert feed_server.routes[route].queries == ["output=csv&gid=3&single=true"]


async def test_a_mapping_sheet_that_is_not_a_name_fails_the_run(
        pool: asyncpg.Pool, sheets: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.url("/spreadsheets/d/Doc-3/edit"),
                                    mapping={"sheet": 3})
    before = await feeds.table_state(pool)
    run = await feeds.pull_once(pool, sheets, feed_id)
    assert run["status"] == "failed"
    assert "mapping.sheet must be the name of a tab" in run["error"]
    assert await feeds.table_state(pool) == before
