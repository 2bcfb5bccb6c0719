"""Auto-connect of feed items to the store's variants, by SKU and by barcode (pull)."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

HEADER = "external_id,vendor_sku,barcode,qty\n"


async def store_variants(pool: asyncpg.Pool, *rows: tuple[str | None, str | None]) -> list[int]:
    """(sku, barcode) rows in `variants`; their ids."""
    return [await pool.fetchval("INSERT INTO variants (sku, barcode) VALUES ($1, $2) RETURNING id",
                                sku, barcode) for sku, barcode in rows]


async def set_prefix(pool: asyncpg.Pool, feed_id: int, prefix: str | None) -> None:
    await pool.execute("UPDATE dropship_providers p SET sku_prefix = $2 FROM inventory_feeds f "
                       "WHERE f.id = $1 AND p.id = f.dropship_provider_id", feed_id, prefix)


async def links(pool: asyncpg.Pool, feed_id: int) -> dict[str, Any]:
    return {k: v["variant_id"] for k, v in (await feeds.items(pool, feed_id)).items()}


class Pulls:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, server: FeedServer) -> None:
        self.pool, self.settings, self.server, self.n = pool, settings, server, 0

    async def feed(self, **columns: Any) -> int:
        return await feeds.make_feed(self.pool, None, **columns)

    async def pull(self, feed_id: int, body: str) -> dict[str, Any]:
        self.n += 1
        url = self.server.add(f"/connect-{self.n}.csv", (HEADER + body).encode())
        run = await feeds.pull_once(self.pool, self.settings, feed_id, url)
        assert run["status"] == "succeeded", run["error"]
        return run


def _pulls(pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> Pulls:
    return Pulls(pool, settings, feed_server)


async def test_exact_sku_connects_new_items(pool: asyncpg.Pool, settings: Settings,
                                            feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    v1, v2 = await store_variants(pool, ("1001", None), (" 1002 ", None))
    feed_id = await p.feed()
    run = await p.pull(feed_id, "E1, 1001 ,,1\nE2,1002,,1\nE3,1003,,1\nE4,1001x,,1\n")
    assert await links(pool, feed_id) == {"E1": v1, "E2": v2, "E3": None, "E4": None}
    assert (run["connected"], run["ambiguous"]) == (2, 0)


async def test_case_insensitive_skus_only_when_the_feed_says_so(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    [v1] = await store_variants(pool, ("AbC-1", None))
    strict = await p.feed()
    folded = await p.feed(case_insensitive_skus=True)
    await p.pull(strict, "E1,abc-1,,1\n")
    run = await p.pull(folded, "E1,abc-1,,1\n")
    assert await links(pool, strict) == {"E1": None}
    assert await links(pool, folded) == {"E1": v1}
    assert run["connected"] == 1


async def test_prefix_both_and_prefix_only(pool: asyncpg.Pool, settings: Settings,
                                           feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    prefixed, plain = await store_variants(pool, ("ACME-1001", None), ("2002", None))
    both = await p.feed(automatically_connect_prefix="both")
    only = await p.feed(automatically_connect_prefix="prefixOnly")
    for feed_id in (both, only):
        await set_prefix(pool, feed_id, "ACME-")
    await p.pull(both, "E1,1001,,1\nE2,2002,,1\n")
    await p.pull(only, "E1,1001,,1\nE2,2002,,1\n")
    # `both`: with the prefix or without; `prefixOnly`: with it only
    assert await links(pool, both) == {"E1": prefixed, "E2": plain}
    assert await links(pool, only) == {"E1": prefixed, "E2": None}


async def test_prefix_only_without_a_prefix_connects_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    await store_variants(pool, ("1001", None))
    feed_id = await p.feed(automatically_connect_prefix="prefixOnly")
    run = await p.pull(feed_id, "E1,1001,,1\n")
    assert await links(pool, feed_id) == {"E1": None}
    assert run["connected"] == 0


async def test_barcodes_compare_as_gtins(pool: asyncpg.Pool, settings: Settings,
                                         feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    upc, ean, code = await store_variants(pool, (None, "012345678905"), (None, "4006381333931"),
                                          (None, "ABC-77"))
    by_code = await p.feed(automatically_connect_by_barcode=True)
    by_sku = await p.feed()
    body = ("E1,,0012345678905,1\n"      # EAN-13 of the UPC-12
            "E2,,04006381333931,1\n"     # GTIN-14 of the EAN-13
            "E3,, ABC-77 ,1\n"           # not digits: compared trimmed
            "E4,,999,1\n")
    run = await p.pull(by_code, body)
    await p.pull(by_sku, body)
    assert await links(pool, by_code) == {"E1": upc, "E2": ean, "E3": code, "E4": None}
    assert run["connected"] == 3
    assert set((await links(pool, by_sku)).values()) == {None}


async def test_a_sku_match_wins_over_a_barcode_match(pool: asyncpg.Pool, settings: Settings,
                                                     feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    by_sku, _ = await store_variants(pool, ("S1", None), (None, "4006381333931"))
    feed_id = await p.feed(automatically_connect_by_barcode=True)
    await p.pull(feed_id, "E1,S1,4006381333931,1\n")
    assert await links(pool, feed_id) == {"E1": by_sku}


async def test_two_store_variants_for_one_item_link_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    await store_variants(pool, ("DUP", None), ("DUP", None), ("OK", None))
    feed_id = await p.feed()
    run = await p.pull(feed_id, "E1,DUP,,1\nE2,OK,,1\n")
    got = await links(pool, feed_id)
    assert got["E1"] is None
    assert got["E2"] is not None
    assert (run["connected"], run["ambiguous"]) == (1, 1)
    assert run["details"]
    assert '"DUP"' in run["details"]


async def test_two_items_for_one_store_variant_link_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    await store_variants(pool, ("SAME", None))
    feed_id = await p.feed(case_insensitive_skus=True)
    run = await p.pull(feed_id, "E1,SAME,,1\nE2,same,,1\n")
    assert await links(pool, feed_id) == {"E1": None, "E2": None}
    assert (run["connected"], run["ambiguous"]) == (0, 2)


async def test_an_item_already_linked_to_the_variant_blocks_a_second(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    [v1] = await store_variants(pool, ("S1", None))
    feed_id = await p.feed()
    await p.pull(feed_id, "E1,S1,,1\n")
    run = await p.pull(feed_id, "E1,S1,,1\nE2,S1,,1\n")
    assert await links(pool, feed_id) == {"E1": v1, "E2": None}
    assert run["ambiguous"] == 1


async def test_changed_sku_of_an_unlinked_item_connects_and_links_stay(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    v1, v2 = await store_variants(pool, ("S1", None), ("S2", None))
    feed_id = await p.feed()
    await p.pull(feed_id, "E1,S1,,1\nE2,NOPE,,1\n")
    run = await p.pull(feed_id, "E1,S9,,1\nE2,S2,,1\n")
    # E1 keeps its link though its SKU moved; E2's new SKU connects it
    assert await links(pool, feed_id) == {"E1": v1, "E2": v2}
    assert run["connected"] == 1


async def test_an_item_unlinked_by_hand_stays_unlinked_while_unchanged(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    await store_variants(pool, ("S1", None))
    feed_id = await p.feed()
    await p.pull(feed_id, "E1,S1,,1\n")
    await pool.execute("UPDATE inventory_feed_variants SET variant_id = NULL")
    run = await p.pull(feed_id, "E1,S1,,2\n")
    assert await links(pool, feed_id) == {"E1": None}
    assert run["connected"] == 0


async def test_connecting_off(pool: asyncpg.Pool, settings: Settings,
                              feed_server: FeedServer) -> None:
    p = _pulls(pool, settings, feed_server)
    await store_variants(pool, ("S1", None))
    feed_id = await p.feed(automatically_connect=False)
    run = await p.pull(feed_id, "E1,S1,,1\n")
    assert await links(pool, feed_id) == {"E1": None}
    assert run["connected"] == 0
