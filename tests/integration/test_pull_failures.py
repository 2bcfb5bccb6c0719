"""A bad file or a failed download fails its run with the reason and changes nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from tests.support import broker, feeds
from tests.support.feedserver import FeedServer
from tests.support.wait import until
from worker.pipeline import stream
from worker.publish import publish_pull
from worker.settings import Settings
from worker.sources.download import Download
from worker.urls import FeedUrl

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


@pytest.mark.parametrize(("location", "reason"), [
    ("file:///etc/hostname", "redirects to file:///etc/hostname: only http and https "
                             "redirects are followed, not 'file'"),
    ("ftp://127.0.0.1/f.csv", "not 'ftp'"),
    ("data:text/csv,external_id%0AX", "not 'data'"),
    ("javascript:alert(1)", "not 'javascript'"),
    ("//", "redirects to '//', which has no host"),
    ("http://[::1", "redirects to a Location that cannot be parsed"),
    ("", "redirects with an empty Location header"),
    (None, "redirects with no Location header"),
])
async def test_a_redirect_that_is_not_http_fails_the_run_at_once(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        location: str | None, reason: str) -> None:
    """A permanent failure with the reason, nothing read, in one request."""
    feed_id = await _seeded(pool, settings, feed_server)
    before = await feeds.table_state(pool)
    if location is None:
        feed_server.add("/moved.csv", status=302)
    else:
        feed_server.add("/moved.csv", redirect=location)
    url = feed_server.url("/moved.csv", "u", SECRET)
    started = time.monotonic()
    run = await feeds.pull_once(pool, settings, feed_id, url)
    assert time.monotonic() - started < 5
    assert run["status"] == "failed"
    assert run["error"].startswith(f"http://u:***@127.0.0.1:{feed_server.port}/moved.csv "
                                   "redirects"), run["error"]
    assert reason in run["error"]
    assert SECRET not in run["error"]
    assert (run["bytes"], run["rows_read"]) == (0, 0)
    assert feed_server.routes["/moved.csv"].requests == 1
    assert await feeds.table_state(pool) == before


async def test_the_daemon_fails_a_redirect_to_a_file_url_within_seconds(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings,
        feed_server: FeedServer) -> None:
    """Through the broker and the runner: the run ends `failed` on its first attempt, not
    `running` until its lease expires and takeovers fail it as abandoned."""
    feed_id = await feeds.make_feed(
        pool, feed_server.add("/moved.csv", redirect="file:///etc/hostname"))
    async with broker.running_daemon(settings):
        await publish_pull(settings, feed_id)

        # Well inside the lease (5 s here): no takeover can have happened.
        run = await until(lambda: _ended(pool, feed_id), timeout_s=settings.lease_s * 0.6,
                          what="the run to end")
    assert run["status"] == "failed"
    assert run["attempts"] == 1
    assert "redirects to file:///etc/hostname: only http and https redirects are followed" \
        in run["error"]
    assert feed_server.routes["/moved.csv"].requests == 1
    assert await feeds.items(pool, feed_id) == {}


@pytest.mark.parametrize(("resource_type", "mapping", "expected"), [
    ("ftp_csv", {"fields": {"externalId": "id", "retailPrice": 1.5}},
     "mapping.fields.retailPrice must be a column name or a 0-based index"),
    ("xml", {"record": "rss/channel/item"},
     'mapping.record must be the absolute path of the record element, such as '
     '"/rss/channel/item"'),
    ("json", {"record": "data..items"},
     "mapping.record 'data..items' is not a dotted path (an empty step)"),
])
async def test_a_bad_mapping_fails_the_run_before_the_download(
        clean_broker: None, pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        resource_type: str, mapping: dict[str, Any], expected: str) -> None:
    """Through the broker and the runner: the mapping is checked when the run is claimed,
    so the feed's server is never asked for the file."""
    feed_id = await feeds.make_feed(pool, feed_server.add("/feed", GOOD),
                                    resource_type=resource_type, mapping=mapping)
    async with broker.running_daemon(settings):
        await publish_pull(settings, feed_id)

        run = await until(lambda: _ended(pool, feed_id), timeout_s=settings.lease_s * 0.6,
                          what="the run to end")
    assert run["status"] == "failed"
    assert run["error"] == expected
    assert run["bytes"] == 0
    assert feed_server.routes["/feed"].requests == 0
    assert await feeds.items(pool, feed_id) == {}


async def test_an_unexpected_error_fails_the_run_with_its_class_and_message(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception outside the worker's vocabulary (here a ValueError from the source, as
    a library might raise) fails the run with its class and message, the URL's password
    masked, rather than leaving the run for takeovers."""
    feed_id = await _seeded(pool, settings, feed_server)
    before = await feeds.table_state(pool)
    real = stream.open_source

    def broken(url: FeedUrl, *args: Any, **kwargs: Any) -> Download:
        download = real(url, *args, **kwargs)
        inner = download.chunks
        assert inner is not None

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in inner:
                yield chunk
                raise ValueError(f"cannot make sense of {url} after {len(chunk)} bytes")

        download.chunks = chunks()
        return download

    monkeypatch.setattr(stream, "open_source", broken)
    url = feed_server.url("/good.csv", "u", SECRET)
    run = await feeds.pull_once(pool, settings, feed_id, url)
    assert run["status"] == "failed"
    assert run["error"] == (f"unexpected error: ValueError: cannot make sense of "
                            f"http://u:***@127.0.0.1:{feed_server.port}/good.csv after "
                            f"{len(GOOD)} bytes")
    assert await feeds.table_state(pool) == before


async def _ended(pool: asyncpg.Pool, feed_id: int) -> dict[str, Any] | None:
    """The feed's run once it is no longer running."""
    row = await pool.fetchrow("SELECT * FROM feed_runs WHERE inventory_feed_id = $1", feed_id)
    return dict(row) if row is not None and row["status"] != "running" else None
