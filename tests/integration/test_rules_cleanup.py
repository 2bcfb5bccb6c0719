"""Items missing from a pull, the cleanup circuit breaker, and dry runs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import asyncpg
import orjson

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

HEADER = "external_id,qty\n"


def rows(n: int, qty: int = 5, start: int = 0) -> str:
    return "".join(f"E{i},{qty}\n" for i in range(start, start + n))


class Feed:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, server: FeedServer) -> None:
        self.pool, self.settings, self.server, self.n = pool, settings, server, 0
        self.id = 0

    async def make(self, **columns: Any) -> Feed:
        self.id = await feeds.make_feed(self.pool, None, **{"fetch_cleanup": "enabled",
                                                             **columns})
        return self

    def url(self, body: str, header: str = HEADER) -> str:
        self.n += 1
        return self.server.add(f"/cleanup-{self.id}-{self.n}.csv", (header + body).encode()
                               if header or body else b"")

    async def pull(self, body: str, header: str = HEADER, force: bool = False,
                   settings: Settings | None = None) -> dict[str, Any]:
        return await feeds.pull_once(self.pool, settings or self.settings, self.id,
                                     self.url(body, header), force=force)

    async def items(self) -> dict[str, dict[str, Any]]:
        return await feeds.items(self.pool, self.id)


async def feed(pool: asyncpg.Pool, settings: Settings, server: FeedServer,
               **columns: Any) -> Feed:
    return await Feed(pool, settings, server).make(**columns)


async def test_missing_items_are_zeroed_and_marked_then_come_back(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(10))
    run = await f.pull(rows(8))  # E8, E9 gone: 20%, under the breaker's share
    assert run["status"] == "succeeded", run["error"]
    assert (run["zeroed"], run["unchanged"]) == (2, 8)
    got = await f.items()
    assert len(got) == 10  # never deleted
    for key in ("E8", "E9"):
        assert got[key]["inventory_quantity"] == 0
        assert got[key]["missing_since"] is not None
        assert got[key]["available"] is False
    assert got["E1"]["missing_since"] is None
    assert got["E1"]["available"] is True
    again = await f.pull(rows(8))  # already zeroed: not zeroed twice
    assert again["zeroed"] == 0
    back = await f.pull(rows(10, qty=3))
    assert back["status"] == "succeeded"
    got = await f.items()
    assert got["E9"]["inventory_quantity"] == 3
    assert got["E9"]["missing_since"] is None
    assert got["E9"]["available"] is True


async def test_cleanup_disabled_leaves_missing_items(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server, fetch_cleanup="disabled")
    await f.pull(rows(10))
    run = await f.pull(rows(1))
    assert (run["status"], run["zeroed"]) == ("succeeded", 0)
    assert {i["inventory_quantity"] for i in (await f.items()).values()} == {5}


async def test_an_empty_file_is_held_and_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(10))
    before = await feeds.table_state(pool)
    for header in ("", HEADER):  # zero bytes, and a header without rows
        run = await f.pull("", header=header)
        assert run["status"] == "held"
        assert "empty" in run["error"] or "no rows" in run["error"]
        assert await feeds.table_state(pool) == before


async def test_a_truncated_file_is_held_until_forced(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(100))
    before = await feeds.table_state(pool)
    history = await pool.fetchval("SELECT count(*) FROM variant_inventory_updates")
    run = await f.pull(rows(30))
    assert run["status"] == "held"
    assert "zero 70 of the feed's 100 items" in run["error"]
    assert run["zeroed"] == 70  # what it would have done
    assert await feeds.table_state(pool) == before
    assert await pool.fetchval("SELECT count(*) FROM variant_inventory_updates") == history
    forced = await f.pull(rows(30), force=True)
    assert (forced["status"], forced["zeroed"]) == ("succeeded", 70)
    assert "zero 70" in orjson.loads(forced["details"])["forced"]
    assert sum(1 for i in (await f.items()).values() if i["inventory_quantity"] == 0) == 70


async def test_an_empty_file_forced_zeroes_everything(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(4))
    run = await f.pull("", header="", force=True)
    assert (run["status"], run["zeroed"]) == ("succeeded", 4)
    assert {i["inventory_quantity"] for i in (await f.items()).values()} == {0}


async def test_a_large_drop_in_tracked_quantity_is_held(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(10, qty=100))
    run = await f.pull(rows(10, qty=10))
    assert run["status"] == "held"
    assert "quantity rule" in run["error"]
    assert "from 1,000 to 100 (90% less, limit 50%" in run["error"]
    # the shares are settings
    loose = replace(settings, cleanup_max_quantity_drop=0.95)
    assert (await f.pull(rows(10, qty=10), settings=loose))["status"] == "succeeded"


async def test_untracked_items_do_not_count_towards_the_stock_drop(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    header = "external_id,qty,inventory_policy\n"
    await f.pull("A,1000,continue\nB,10,track\n", header=header)
    run = await f.pull("A,0,continue\nB,10,track\n", header=header)
    assert run["status"] == "succeeded", run["error"]
    got = await f.items()
    assert got["A"]["available"] is True   # not tracked: always available
    zero = await f.pull("A,0,continue\nB,0,track\n", header=header)
    assert zero["status"] == "held"        # B's stock went from 10 to 0


async def test_dry_run_reports_and_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await pool.execute("INSERT INTO variants (sku) VALUES ('E3')")
    await f.pull("E1,5\nE2,5\nE4,5\nE5,5\nE6,5\n")
    before = await feeds.database_state(pool)
    body = "E1,5\nE2,9\nE3,1\nE4,5\nE5,5\nE7,1\n"  # E6 missing, E2 changed, E3/E7 new
    outcome = await feeds.dry_run(pool, settings, f.id, f.url(body))
    assert outcome.status == "dry-run"
    r = outcome.report
    assert (r.inserted, r.updated, r.unchanged, r.zeroed, r.connected) == (2, 1, 3, 1, 0)
    assert await feeds.database_state(pool) == before


async def test_dry_run_says_what_the_breaker_would_hold(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(10))
    before = await feeds.database_state(pool)
    outcome = await feeds.dry_run(pool, settings, f.id, f.url(rows(2)))
    assert outcome.status == "dry-run"
    assert outcome.error is not None
    assert "zero 8" in outcome.error
    assert await feeds.database_state(pool) == before
