"""A bad file or a failed download fails its run with the reason and changes nothing."""

from __future__ import annotations

import socket
from dataclasses import replace

import asyncpg
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

GOOD = b"external_id,qty,name\nA,1,first\nB,2,second\n"
SECRET = "pa55w0rd-XYZ"


async def _seeded(pool: asyncpg.Pool, settings: Settings, server: FeedServer) -> int:
    feed_id = await feeds.make_feed(pool, server.add("/good.csv", GOOD))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["inserted"] == 2
    return feed_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "route", "expected"),
    [
        ("/missing.csv", None, "HTTP 404"),
        ("/auth.csv", {"auth": ("u", "other")}, "HTTP 401"),
        ("/boom.csv", {"status": 500}, "HTTP 500"),
        ("/page.html", {"body": b"<html><body>Maintenance</body></html>\n",
                        "content_type": "text/html"}, "no column for externalId"),
        ("/bin.csv", {"body": b"external_id,name\nA,caf\xc3\xa9\n\xff\xfe\x00garbage\n"},
         "not valid UTF-8 text"),
        ("/empty.csv", {"body": b""}, "the file is empty"),
        ("/allbad.csv", {"body": b"external_id,qty\nA,x\nB,y\n"}, "no valid rows"),
        ("/mapped.csv", {"body": b"id,qty\nA,1\n"}, "no column for externalId"),
    ],
)
async def test_bad_source_fails_the_run_and_leaves_the_table(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        path: str, route: dict[str, object] | None, expected: str) -> None:
    feed_id = await _seeded(pool, settings, feed_server)
    before = await feeds.table_state(pool)
    if route is not None:
        feed_server.add(path, **route)  # type: ignore[arg-type]
    url = feed_server.url(path, "u", SECRET)
    run = await feeds.pull_once(pool, settings, feed_id, url)
    assert run["status"] == "failed"
    assert expected in run["error"]
    assert SECRET not in run["error"]
    assert SECRET not in (run["source"] or "")
    assert await feeds.table_state(pool) == before


async def test_mapped_column_missing_from_header_names_it(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/m.csv", b"Item ID,Qty\nA,1\n"),
        mapping={"fields": {"externalId": "Item ID", "inventoryQuantity": "Stock"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "'Stock'" in run["error"]
    assert "inventoryQuantity" in run["error"]


async def test_connection_refused(pool: asyncpg.Pool, settings: Settings,
                                  feed_server: FeedServer) -> None:
    feed_id = await _seeded(pool, settings, feed_server)
    before = await feeds.table_state(pool)
    url = f"http://u:{SECRET}@127.0.0.1:{_free_port()}/x.csv"
    run = await feeds.pull_once(pool, settings, feed_id, url)
    assert run["status"] == "failed"
    assert "cannot connect" in run["error"]
    assert SECRET not in run["error"]
    assert await feeds.table_state(pool) == before


async def test_a_stalled_download_times_out(pool: asyncpg.Pool, settings: Settings,
                                            feed_server: FeedServer) -> None:
    feed_id = await _seeded(pool, settings, feed_server)
    before = await feeds.table_state(pool)
    body = b"external_id,qty\n" + b"".join(b"K%d,1\n" % i for i in range(5000))
    feed_server.add("/slow.csv", body, stall_after=len(body) // 2)
    fast = replace(settings, fetch_read_timeout_s=0.5)
    run = await feeds.pull_once(pool, fast, feed_id, feed_server.url("/slow.csv", "u", SECRET))
    assert run["status"] == "failed"
    assert "timed out" in run["error"]
    assert SECRET not in run["error"]
    assert await feeds.table_state(pool) == before


async def test_a_body_over_the_byte_cap(pool: asyncpg.Pool, settings: Settings,
                                        feed_server: FeedServer) -> None:
    feed_id = await _seeded(pool, settings, feed_server)
    before = await feeds.table_state(pool)
    body = b"external_id,qty\n" + b"".join(b"K%d,1\n" % i for i in range(20000))
    feed_server.add("/huge.csv", body)
    capped = replace(settings, max_file_bytes=50_000)
    run = await feeds.pull_once(pool, capped, feed_id, feed_server.url("/huge.csv"))
    assert run["status"] == "failed"
    assert "50000-byte cap" in run["error"]
    assert await feeds.table_state(pool) == before


async def test_invalid_utf8_deep_in_a_big_file_rolls_back_the_copy(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """The COPY is already streaming when the bad byte arrives: all of it is undone."""
    feed_id = await _seeded(pool, settings, feed_server)
    await pool.execute("UPDATE inventory_feeds SET encoding = 'utf-8' WHERE id = $1", feed_id)
    before = await feeds.table_state(pool)
    rows = b"".join(b"K%d,1,n\n" % i for i in range(40000))
    body = b"external_id,qty,name\n" + rows + b"Z,1,\xc3\x28\n"
    feed_server.add("/late.csv", body, chunk=8192)
    run = await feeds.pull_once(pool, replace(settings, copy_batch_rows=500), feed_id,
                                feed_server.url("/late.csv"))
    assert run["status"] == "failed"
    assert f"at byte {len(body) - 3}" in run["error"]
    assert await feeds.table_state(pool) == before
    # The pool's connections are healthy afterwards.
    assert await pool.fetchval("SELECT count(*) FROM inventory_feed_variants") == 2
