"""The cleanup circuit breaker's rules on real pulls: each holds with its reason and leaves
the items as they were; a feed's own limits; force; the last succeeded pull."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from tests.integration.test_rules_cleanup import HEADER, feed, rows
from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.pipeline.breaker import pct
from worker.settings import Settings


def breaker_of(run: dict[str, Any]) -> dict[str, Any]:
    details = orjson.loads(run["details"])
    assert isinstance(details, dict)
    found = details.get("breaker")
    assert isinstance(found, dict), details
    return found


def twice(n: int) -> str:
    """n items, each listed twice (the last occurrence wins): 2n records."""
    return rows(n) + rows(n)


async def test_the_issues_cut_download_is_held_by_the_lowered_default(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(1000))
    before = await feeds.table_state(pool)
    cut = await f.pull(rows(703))  # the download stopped at 70%: 29.7% of items missing
    assert cut["status"] == "held"
    assert cut["error"] == ("held by the zeroed rule: cleanup would zero 297 of the feed's "
                            "1,000 items (29.7%, limit 20%: FEED_WORKER_CLEANUP_MAX_ZEROED_SHARE)")
    assert breaker_of(cut) == {
        "rule": "zeroed", "zeroed": 297, "items_before": 1000, "share": 0.297, "limit": 0.2,
        "limit_source": "FEED_WORKER_CLEANUP_MAX_ZEROED_SHARE"}
    assert await feeds.table_state(pool) == before
    forced = await f.pull(rows(703), force=True)
    assert (forced["status"], forced["zeroed"]) == ("succeeded", 297)
    assert breaker_of(forced)["rule"] == "zeroed"
    assert "29.7%" in orjson.loads(forced["details"])["forced"]


async def test_the_rows_rule_holds_fewer_records_than_the_last_succeeded_pull(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    # Every item is listed twice in the first file and once in the next: nothing would be
    # zeroed, yet half the records are gone.
    f = await feed(pool, settings, feed_server)
    first = await f.pull(twice(50))
    assert (first["status"], first["rows_read"]) == ("succeeded", 100)
    before = await feeds.table_state(pool)
    run = await f.pull(rows(50, qty=7))
    assert run["status"] == "held"
    assert (run["zeroed"], run["updated"]) == (0, 50)  # what it would have done
    assert run["error"] == (f"held by the rows rule: 50 records read against 100 in run "
                            f"{first['id']} (50% fewer, limit 30%: "
                            "FEED_WORKER_BREAKER_MAX_ROWS_DROP)")
    assert breaker_of(run) == {
        "rule": "rows", "rows_read": 50, "last_rows_read": 100, "last_run_id": first["id"],
        "share": 0.5, "limit": 0.3, "limit_source": "FEED_WORKER_BREAKER_MAX_ROWS_DROP"}
    assert await feeds.table_state(pool) == before
    forced = await f.pull(rows(50, qty=7), force=True)
    assert forced["status"] == "succeeded"
    assert {i["inventory_quantity"] for i in (await f.items()).values()} == {7}
    # the forced run is the last succeeded one now: the same file passes
    assert (await f.pull(rows(50, qty=8)))["status"] == "succeeded"


async def test_the_bytes_rule_holds_a_much_smaller_file(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    header = "external_id,qty,padding\n"
    wide = "".join(f"E{i},5,{'x' * 200}\n" for i in range(20))
    first = await f.pull(wide, header=header)
    assert first["status"] == "succeeded", first["error"]
    before = await feeds.table_state(pool)
    run = await f.pull(rows(20))  # the same records, without the long column
    assert run["status"] == "held"
    assert run["bytes"] < first["bytes"] / 2
    assert run["error"] == (
        f"held by the bytes rule: the file is {run['bytes']:,} bytes against "
        f"{first['bytes']:,} in run {first['id']} "
        f"({pct(1 - run['bytes'] / first['bytes'])} smaller, limit 50%: "
        "FEED_WORKER_BREAKER_MAX_BYTES_DROP)")
    found = breaker_of(run)
    assert (found["rule"], found["bytes"], found["last_bytes"]) == \
        ("bytes", run["bytes"], first["bytes"])
    assert await feeds.table_state(pool) == before


async def test_rows_and_bytes_compare_with_the_last_succeeded_pull_only(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server, breaker_max_zeroed_share=1.0)
    first = await f.pull(rows(100))
    assert first["status"] == "succeeded"
    # a failed run that read many records (all rejected: blank ids) is no yardstick
    failed = await f.pull(",5\n" * 1000)
    assert (failed["status"], failed["rows_read"]) == ("failed", 1000)
    yardstick = await f.pull(rows(100))
    assert yardstick["status"] == "succeeded", yardstick["error"]
    # a held run is none either: the next short file is still judged against 100 records
    held = await f.pull(rows(50))
    assert held["status"] == "held"
    again = await f.pull(rows(60))
    assert again["status"] == "held"
    assert f"60 records read against 100 in run {yardstick['id']} " in again["error"]
    assert breaker_of(again)["last_run_id"] == yardstick["id"]


async def test_a_feeds_own_limits_beat_the_settings(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    strict = await feed(pool, settings, feed_server, breaker_max_zeroed_share=0.05)
    await strict.pull(rows(100))
    before = await feeds.table_state(pool)
    run = await strict.pull(rows(90))  # 10%: under the setting, over the feed's own limit
    assert run["status"] == "held"
    assert run["error"].endswith("(10%, limit 5%: inventory_feeds.breaker_max_zeroed_share)")
    assert breaker_of(run)["limit_source"] == "inventory_feeds.breaker_max_zeroed_share"
    assert await feeds.table_state(pool) == before

    loose = await feed(pool, settings, feed_server, breaker_max_zeroed_share=0.5,
                       breaker_max_rows_drop=0.5)
    await loose.pull(rows(1000))
    cut = await loose.pull(rows(600))  # 40% zeroed, 40% fewer records: both allowed
    assert (cut["status"], cut["zeroed"]) == ("succeeded", 400), cut["error"]

    rows_strict = await feed(pool, settings, feed_server, breaker_max_rows_drop=0.05)
    await rows_strict.pull(twice(50))
    run = await rows_strict.pull(rows(50) + rows(40))  # 10% fewer records, nothing zeroed
    assert run["status"] == "held"
    assert "limit 5%: inventory_feeds.breaker_max_rows_drop" in run["error"]


async def test_every_tripped_rule_is_named(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(100))
    run = await f.pull(rows(10))
    assert run["status"] == "held"
    assert [part.split(":")[0] for part in run["error"].split("; ")] == [
        "held by the zeroed rule", "held by the quantity rule", "held by the rows rule",
        "held by the bytes rule"]
    found = breaker_of(run)
    assert found["rule"] == "zeroed"
    assert [a["rule"] for a in found["also"]] == ["quantity", "rows", "bytes"]


async def test_without_cleanup_the_breaker_does_not_judge(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    # The rules guard the zeroing: a short file of a feed without cleanup zeroes nothing.
    f = await feed(pool, settings, feed_server, fetch_cleanup="disabled")
    await f.pull(rows(100))
    run = await f.pull(rows(10, qty=9))
    assert (run["status"], run["zeroed"]) == ("succeeded", 0), run["error"]
    assert "breaker" not in orjson.loads(run["details"])
    got = await f.items()
    assert (got["E1"]["inventory_quantity"], got["E50"]["inventory_quantity"]) == (9, 5)


async def test_dry_run_names_the_rule_that_would_hold(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(twice(50))
    before = await feeds.database_state(pool)
    outcome = await feeds.dry_run(pool, settings, f.id, f.url(rows(50)))
    assert outcome.status == "dry-run"
    assert outcome.error is not None
    assert outcome.error.startswith("held by the rows rule: 50 records read against 100 in run")
    assert outcome.report.details["breaker"]["rule"] == "rows"
    assert await feeds.database_state(pool) == before


async def test_an_empty_file_names_the_empty_rule(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    f = await feed(pool, settings, feed_server)
    await f.pull(rows(10))
    run = await f.pull("", header="")
    assert run["status"] == "held"
    assert run["error"].startswith("held by the empty rule: the file is empty")
    assert breaker_of(run) == {"rule": "empty", "rows_read": 0, "bytes": 0}
    run = await f.pull("", header=HEADER)
    assert run["status"] == "held"
    assert breaker_of(run)["rule"] == "empty"


@pytest.mark.parametrize("column", ["breaker_max_zeroed_share", "breaker_max_quantity_drop",
                                    "breaker_max_rows_drop", "breaker_max_bytes_drop"])
async def test_a_feeds_limit_is_a_share(pool: asyncpg.Pool, column: str) -> None:
    feed_id = await feeds.make_feed(pool)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(f"UPDATE inventory_feeds SET {column} = 1.5 WHERE id = $1", feed_id)
    await pool.execute(f"UPDATE inventory_feeds SET {column} = 0 WHERE id = $1", feed_id)
