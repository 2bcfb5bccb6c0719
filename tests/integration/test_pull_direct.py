"""A first import copies its rows straight into the items table (worker/direct.py).

Each scenario runs the same file through two new feeds: one first import as it runs, one
made to stage and merge its rows as any later pull does. The items (every column a pull
writes, the fingerprints and the time stamps' meaning included) and the runs' counts must
come out the same."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.pipeline import pull
from worker.settings import Settings
from worker.store import bulk

HEADER = "external_id,vendor_sku,barcode,name,retail_price,qty,grams,policy\n"
COUNTS = ("status", "rows_read", "inserted", "updated", "unchanged", "zeroed", "duplicates",
          "rejected", "connected", "ambiguous")
COMPARED = ("external_id", "vendor_sku", "barcode", "name", "inventory_quantity",
            "inventory_policy", "retail_price", "cost_price", "compare_at_price", "grams",
            "mpn", "external_group_id", "options", "images", "extra", "currency",
            "missing_since", "fingerprint")
MAPPING = {"fields": {"inventoryPolicy": "policy"}}


def rows(n: int, start: int = 0, qty: int = 5) -> list[str]:
    """Rows with blanks where an item column has a default (grams, policy) now and then."""
    return [f"E{i},SKU{i},{10**11 + i},Item {i},{i}.50,{qty},"
            f"{'' if i % 3 == 0 else i % 7},{'' if i % 4 == 0 else 'deny'}\n"
            for i in range(start, start + n)]


def details(run: dict[str, Any]) -> dict[str, Any]:
    d = run["details"]
    return orjson.loads(d) if isinstance(d, str) else dict(d or {})


class Twins:
    """Two new feeds; the first's import goes straight in, the second's is merged."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, server: FeedServer,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.pool, self.settings, self.server = pool, settings, server
        self.monkeypatch = monkeypatch
        self.files = 0
        self.ids: tuple[int, int] = (0, 0)

    async def make(self, **columns: Any) -> None:
        columns.setdefault("mapping", MAPPING)
        self.ids = (await feeds.make_feed(self.pool, **columns),
                    await feeds.make_feed(self.pool, **columns))

    async def pull(self, body: str, status: str = "succeeded") -> dict[str, Any]:
        self.files += 1
        url = self.server.add(f"/direct{self.files}", body.encode())
        runs = []
        real = pull._first_import

        async def staged(*args: Any) -> None:
            return None

        for feed_id, first_import in zip(self.ids, (real, staged), strict=True):
            self.monkeypatch.setattr(pull, "_first_import", first_import)
            run = await feeds.pull_once(self.pool, self.settings, feed_id, url)
            assert run["status"] == status, run["error"]
            runs.append(run)
        self.monkeypatch.setattr(pull, "_first_import", real)
        direct, merged = runs
        assert [direct[k] for k in COUNTS] == [merged[k] for k in COUNTS]
        assert "copied" not in details(merged)
        for key in ("ambiguous_skus", "breaker"):
            assert details(direct).get(key) == details(merged).get(key), key
        assert await self.items(0) == await self.items(1)
        for which, run in enumerate(runs):
            await self.stamps_are_the_merges(which, run)
        return direct

    async def items(self, which: int) -> dict[str, tuple[Any, ...]]:
        got = await feeds.items(self.pool, self.ids[which])
        return {k: tuple(v[c] for c in COMPARED) for k, v in got.items()}

    async def stamps_are_the_merges(self, which: int, run: dict[str, Any]) -> None:
        """Written now (the transaction's time, before the run ended), in the order of
        the run's start."""
        got = await feeds.items(self.pool, self.ids[which])
        stamps = {(v["inventory_updated_at"], v["last_fetched_at"]) for v in got.values()}
        assert len(stamps) == 1
        ((updated, fetched),) = stamps
        assert updated == fetched
        assert run["started_at"] <= updated <= run["finished_at"]
        assert {v["ordered_at"] for v in got.values()} == {run["started_at"]}


@pytest.fixture
def twins(pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
          monkeypatch: pytest.MonkeyPatch) -> Twins:
    # a store with variants: copied, then connected (what a large store's import skips)
    monkeypatch.setattr(bulk, "CONNECT_AFTER_COPY", True)
    return Twins(pool, settings, feed_server, monkeypatch)


async def test_a_first_import_goes_straight_in_as_a_merge_would_write_it(
        twins: Twins, pool: asyncpg.Pool) -> None:
    await twins.make(fetch_cleanup="enabled")
    body = HEADER + "".join(rows(50)) + "E60,SKU60,,Tab\\tand\\\\slash,1.5,3,,\n" \
        + "E61,SKU61,,bad qty,1.5,lots,,\n"
    run = await twins.pull(body)
    assert (run["inserted"], run["rejected"], details(run)["copied"]) == (51, 1, 51)
    items = await feeds.items(pool, twins.ids[0])
    assert items["E60"]["name"] == "Tab\\tand\\\\slash"
    assert (items["E0"]["grams"], items["E0"]["inventory_policy"]) == (0, "track")
    assert (items["E1"]["grams"], items["E1"]["inventory_policy"]) == (1, "deny")
    assert all(v["fingerprint"] is not None for v in items.values())
    # the next pull is merged, and the stored fingerprints leave the unchanged rows out
    twins.monkeypatch.setattr(pull, "KNOWN_MIN_ROWS", 1)
    again = await feeds.pull_once(pool, twins.settings, twins.ids[0],
                                  twins.server.add("/again", body.encode()))
    assert (again["unchanged"], again["updated"], details(again)["left_out"]) == (51, 0, 51)


async def test_a_key_seen_before_stages_the_rest_of_the_file(
        twins: Twins, pool: asyncpg.Pool) -> None:
    twins.monkeypatch.setattr(bulk, "LARGE_MERGE_ROWS", 1000)  # planned as a large file's
    await twins.make(fetch_cleanup="enabled", automatically_connect=True)
    await pool.execute("INSERT INTO variants (sku) VALUES ('SKU7'), ('SKU4000')")
    first = rows(6000)
    # far past the first batches: E7 again (changed), E11 twice more, and new keys
    body = (HEADER + "".join(first) + "".join(rows(1, 7, qty=9)) + "".join(rows(2, 6000))
            + "".join(rows(1, 11, qty=1)) + "".join(rows(1, 11, qty=2)))
    run = await twins.pull(body)
    assert (run["inserted"], run["updated"], run["duplicates"]) == (6002, 0, 3)
    copied = details(run)["copied"]
    assert 0 < copied < 6000
    items = await feeds.items(pool, twins.ids[0])
    assert (items["E7"]["inventory_quantity"], items["E11"]["inventory_quantity"]) == (9, 2)
    assert items["E7"]["variant_id"] is not None
    assert items["E4000"]["variant_id"] is not None
    assert run["connected"] == 2
    history = await pool.fetchval(
        "SELECT count(*) FROM variant_inventory_updates WHERE inventory_feed_id = $1",
        twins.ids[0])
    assert history == 0  # every item is new: nothing changed from a value it had


async def test_ambiguous_skus_are_left_unconnected_as_by_the_merge(
        twins: Twins, pool: asyncpg.Pool) -> None:
    await twins.make(automatically_connect=True)
    await pool.execute("INSERT INTO variants (sku) VALUES ('SKU1'), ('SKU2'), ('SKU2')")
    run = await twins.pull(HEADER + "".join(rows(5)))
    assert (run["connected"], run["ambiguous"]) == (1, 1)
    assert details(run)["ambiguous_skus"] == ["SKU2"]


async def test_a_feed_with_pushed_items_is_merged(
        twins: Twins, pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, mapping=MAPPING)
    await pool.execute(
        "INSERT INTO inventory_feed_variants (inventory_feed_id, external_id, name) "
        "VALUES ($1, 'E1', 'pushed')", feed_id)
    run = await feeds.pull_once(pool, settings, feed_id,
                                feed_server.add("/pushed", (HEADER + "".join(rows(3))).encode()))
    assert (run["inserted"], run["updated"]) == (2, 1)
    assert "copied" not in details(run)


async def test_a_dry_run_and_a_failed_first_import_leave_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, mapping=MAPPING)
    url = feed_server.add("/dry", (HEADER + "".join(rows(40))).encode())
    await feeds.dry_run(pool, settings, feed_id, url)
    assert await feeds.items(pool, feed_id) == {}
    bad = "".join(f"E{i},SKU{i},,n,1,many,,\n" for i in range(5))  # every row rejected
    run = await feeds.pull_once(pool, settings, feed_id,
                                feed_server.add("/bad", (HEADER + bad).encode()))
    assert run["status"] == "failed"
    assert "no valid rows" in run["error"]
    assert await feeds.items(pool, feed_id) == {}


async def test_a_large_feed_emptied_since_its_last_pull_is_copied_again(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pull, "KNOWN_MIN_ROWS", 1)  # its fingerprints are loaded
    feed_id = await feeds.make_feed(pool, mapping=MAPPING, fetch_cleanup="enabled")
    body = (HEADER + "".join(rows(30))).encode()
    first = await feeds.pull_once(pool, settings, feed_id, feed_server.add("/e1", body))
    assert details(first)["copied"] == 30
    await pool.execute("DELETE FROM inventory_feed_variants WHERE inventory_feed_id = $1",
                       feed_id)
    again = await feeds.pull_once(pool, settings, feed_id, feed_server.add("/e2", body))
    assert (again["inserted"], details(again)["copied"]) == (30, 30)
    # every item missing (none available) but still there: merged, as any refresh
    await pool.execute("UPDATE inventory_feed_variants SET missing_since = now() "
                       "WHERE inventory_feed_id = $1", feed_id)
    back = await feeds.pull_once(pool, settings, feed_id, feed_server.add("/e3", body))
    assert (back["status"], back["inserted"], back["updated"]) == ("succeeded", 0, 30)
    assert "copied" not in details(back)


async def test_a_store_with_variants_to_connect_to_is_merged_into(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    await pool.execute("INSERT INTO variants (sku) VALUES ('SKU1')")
    feed_id = await feeds.make_feed(pool, mapping=MAPPING, automatically_connect=True)
    run = await feeds.pull_once(pool, settings, feed_id,
                                feed_server.add("/store", (HEADER + "".join(rows(3))).encode()))
    assert (run["inserted"], run["connected"]) == (3, 1)
    assert "copied" not in details(run)
    off = await feeds.make_feed(pool, mapping=MAPPING, automatically_connect=False)
    run = await feeds.pull_once(pool, settings, off,
                                feed_server.add("/store2", (HEADER + "".join(rows(3))).encode()))
    assert (run["inserted"], run["connected"], details(run)["copied"]) == (3, 0, 3)


async def test_columns_left_unwritten_keep_a_first_imports_fingerprints(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An item a row inserts is what its text makes, whatever the merge's mask: the next
    pull of the same records leaves them all out."""
    monkeypatch.setattr(pull, "KNOWN_MIN_ROWS", 1)
    feed_id = await feeds.make_feed(pool, resource_type="json",
                                    mapping={"fields": {"externalId": "code"}})
    body = orjson.dumps([{"code": f"K{i}", "inventoryQuantity": i} for i in range(20)])
    first = await feeds.pull_once(
        pool, settings, feed_id, feed_server.add("/u1", body, content_type="application/json"))
    assert "name" in details(first)["unwritten"]
    assert details(first)["copied"] == 20
    assert None not in {v["fingerprint"] for v in (await feeds.items(pool, feed_id)).values()}
    again = await feeds.pull_once(
        pool, settings, feed_id, feed_server.add("/u2", body, content_type="application/json"))
    assert (again["unchanged"], details(again)["left_out"]) == (20, 20)
