"""Feeds may only be fetched from allowed addresses. Only loopback addresses are used
here: 127.0.0.1 is allowed, everything else is refused before any connection is made."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

BODY = b"external_id,qty\nA,1\n"


@pytest.mark.parametrize("host", [
    "127.0.0.2",             # loopback, but not the allowed /32
    "2130706433",            # 127.0.0.1 as one decimal number: resolves, then refused
    "0x7f000002",            # hex notation
    "[::ffff:127.0.0.2]",    # IPv4-mapped IPv6
    "[::1]",
    "169.254.169.254",       # cloud metadata
    "10.0.0.1",
    "100.64.0.1",            # CGNAT
    "localhost",
])
async def test_addresses_outside_the_allowed_networks_are_refused(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, host: str) -> None:
    feed_server.add("/f.csv", BODY)
    # Names of 127.0.0.1 itself are refused under the default policy (global addresses).
    allowed = "" if host in ("2130706433", "localhost") else "127.0.0.1/32"
    strict = replace(settings, allowed_networks=allowed)
    feed_id = await feeds.make_feed(pool, f"http://{host}:{feed_server.port}/f.csv")
    run = await feeds.pull_once(pool, strict, feed_id)
    assert run["status"] == "failed"
    assert "not an allowed address" in run["error"]
    assert feed_server.routes["/f.csv"].requests == 0


async def test_the_allowed_network_is_served(pool: asyncpg.Pool, settings: Settings,
                                             feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]


async def test_by_default_only_global_addresses(pool: asyncpg.Pool, settings: Settings,
                                                feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    run = await feeds.pull_once(pool, replace(settings, allowed_networks=""), feed_id)
    assert run["status"] == "failed"
    assert "127.0.0.1 is not an allowed address" in run["error"] or \
        "resolves to 127.0.0.1" in run["error"]
    assert feed_server.routes["/f.csv"].requests == 0


async def test_a_redirect_is_checked_before_it_is_followed(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_server.add("/f.csv", BODY)
    feed_server.add("/moved.csv", redirect=f"http://127.0.0.2:{feed_server.port}/f.csv")
    feed_server.add("/hop.csv", redirect="/f.csv")
    feed_id = await feeds.make_feed(pool, feed_server.url("/moved.csv", "u", "secret9"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "127.0.0.2" in run["error"]
    assert feed_server.routes["/f.csv"].requests == 0
    run = await feeds.pull_once(pool, settings, feed_id, feed_server.url("/hop.csv"))
    assert run["status"] == "succeeded", run["error"]
    assert feed_server.routes["/f.csv"].requests == 1
