"""A refresh that leaves its unchanged rows out (worker/fingerprints.py).

Each scenario runs the same files through two feeds: one pulled as a large feed is (its
fingerprints loaded, rows found among them never staged), one through the merge alone. The
items, the runs' counts and the item history must come out the same; the fingerprinted feed
must also have left rows out. Each runs twice: with the fingerprinted feed's staged rows
merged whole, and merged a few rows at a time while the file streams (segments)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.pipeline import pull, stream
from worker.settings import Settings
from worker.store import bulk

HEADER = "external_id,vendor_sku,barcode,name,retail_price,compare_at_price,qty,grams\n"
COUNTS = ("status", "rows_read", "inserted", "updated", "unchanged", "zeroed", "duplicates",
          "rejected", "connected", "ambiguous")
# what a pull writes of an item
COMPARED = ("external_id", "vendor_sku", "barcode", "name", "inventory_quantity",
            "inventory_policy", "retail_price", "cost_price", "compare_at_price", "grams",
            "mpn", "external_group_id", "options", "images", "extra", "currency",
            "variant_id")
# ... and whether it is available (missing_since IS NULL)


def rows(n: int, start: int = 0, price: str = "{i}.50", qty: int = 5) -> list[str]:
    return [f"E{i},SKU{i},{10**11 + i},Item {i},{price.format(i=i)},,{qty},{i % 7}\n"
            for i in range(start, start + n)]


def details(run: dict[str, Any]) -> dict[str, Any]:
    d = run["details"]
    return orjson.loads(d) if isinstance(d, str) else dict(d or {})


def breaker_figures(run: dict[str, Any]) -> str:
    """The circuit breaker's figures, but for the run ids (the twins' differ)."""
    return re.sub(r'"last_run_id":\d+', "", orjson.dumps(details(run).get("breaker")).decode())


class Twins:
    """One feed pulled with fingerprints, one without, the same files through both."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, server: FeedServer,
                 monkeypatch: pytest.MonkeyPatch, segment_rows: int | None) -> None:
        self.pool, self.settings, self.server = pool, settings, server
        self.monkeypatch = monkeypatch
        self.segment_rows = segment_rows
        self.files = 0
        self.ids: tuple[int, int] = (0, 0)

    async def make(self, **columns: Any) -> None:
        self.ids = (await feeds.make_feed(self.pool, **columns),
                    await feeds.make_feed(self.pool, **columns))

    async def pull(self, body: str | bytes, status: str = "succeeded", **kwargs: Any
                   ) -> dict[str, Any]:
        """Both feeds pull the file; their counts, circuit breaker figures and items must
        agree. The fingerprinted feed's run."""
        self.files += 1
        data = body.encode() if isinstance(body, str) else body
        url = self.server.add(f"/twin{self.files}", data, **kwargs)
        runs = []
        for feed_id, threshold in zip(self.ids, (1, 10**9), strict=True):
            self.monkeypatch.setattr(pull, "KNOWN_MIN_ROWS", threshold)
            if self.segment_rows is not None:  # a segment's end can come every 40 rows
                self.monkeypatch.setattr(pull, "SEGMENT_ROWS", self.segment_rows)
                self.monkeypatch.setattr(stream, "PARSE_PIECE", 2048)
            run = await feeds.pull_once(self.pool, self.settings, feed_id, url)
            assert run["status"] == status, run["error"]
            runs.append(run)
        printed, plain = runs
        assert [printed[k] for k in COUNTS] == [plain[k] for k in COUNTS]
        assert breaker_figures(printed) == breaker_figures(plain)
        assert "left_out" not in details(plain)
        assert "segments" not in details(plain)
        assert await self.items(0) == await self.items(1)
        assert await self.history(0) == await self.history(1)
        return printed

    async def history(self, which: int) -> list[tuple[Any, ...]]:
        """The feed's item history (its items by key), in order."""
        got = await self.pool.fetch(
            "SELECT i.external_id, h.action_type, h.old_quantity, h.new_quantity, "
            "h.old_retail_price, h.new_retail_price "
            "FROM variant_inventory_updates h "
            "JOIN inventory_feed_variants i ON i.id = h.inventory_feed_variant_id "
            "WHERE h.inventory_feed_id = $1 ORDER BY h.id", self.ids[which])
        return sorted(tuple(r) for r in got)

    async def items(self, which: int) -> dict[str, tuple[Any, ...]]:
        got = await feeds.items(self.pool, self.ids[which])
        return {k: (*(v[c] for c in COMPARED), v["missing_since"] is None)
                for k, v in got.items()}

    async def fingerprints(self) -> dict[str, int | None]:
        got = await feeds.items(self.pool, self.ids[0])
        return {k: v["fingerprint"] for k, v in got.items()}


@pytest.fixture(params=[None, 7], ids=["whole", "segments"])
def twins(pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
          monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Twins:
    return Twins(pool, settings, feed_server, monkeypatch, request.param)


def segments(run: dict[str, Any]) -> int:
    n: int = details(run).get("segments", 0)
    return n


def left_out(run: dict[str, Any]) -> int:
    n: int = details(run)["left_out"]
    return n


@pytest.mark.parametrize("sorted_by", ["worker", "postgres"])
async def test_a_refresh_stages_what_changed_and_counts_the_rest(
        twins: Twins, pool: asyncpg.Pool, sorted_by: str) -> None:
    if sorted_by == "postgres":  # as for a feed of millions of items
        twins.monkeypatch.setattr(bulk, "SORT_HERE_BYTES", 0)
    await twins.make(fetch_cleanup="enabled")
    first = rows(300)
    run = await twins.pull(HEADER + "".join(first))
    assert run["inserted"] == 300
    before = await pool.fetch(
        "SELECT external_id, xmin::text AS x FROM inventory_feed_variants "
        "WHERE inventory_feed_id = $1", twins.ids[0])
    second = list(first)
    for i in range(0, 300, 10):  # 30 changed
        second[i] = rows(1, i, qty=7)[0]
    del second[290:]  # 10 gone: zeroed
    second += rows(4, 1000)  # 4 new
    run = await twins.pull(HEADER + "".join(second))
    assert (run["inserted"], run["updated"], run["zeroed"]) == (4, 29, 10)
    assert run["unchanged"] == 261
    assert 200 <= left_out(run) <= 261  # a few may be staged after all; never more
    if twins.segment_rows:  # 43 staged rows: merged 7 at a time, the last with the rest
        assert segments(run) > 3
        assert "segments_restarted" not in details(run)
    after = {r["external_id"]: r["x"] for r in await pool.fetch(
        "SELECT external_id, xmin::text AS x FROM inventory_feed_variants "
        "WHERE inventory_feed_id = $1", twins.ids[0])}
    untouched = [r["external_id"] for r in before
                 if int(r["external_id"][1:]) % 10 and int(r["external_id"][1:]) < 290]
    assert all(after[k] == next(b["x"] for b in before if b["external_id"] == k)
               for k in untouched[:20])
    # the breaker saw the whole feed: 300 available items before, 10 zeroed
    prints = await twins.fingerprints()
    assert prints["E1"] is not None
    assert prints["E295"] is None  # zeroed: forgotten


async def test_the_circuit_breaker_sees_the_whole_feed(twins: Twins) -> None:
    await twins.make(fetch_cleanup="enabled")
    first = rows(200)
    await twins.pull(HEADER + "".join(first))
    # 40% of the items gone, and most of the stock: held, with the same figures
    run = await twins.pull(HEADER + "".join(first[:120]), status="held")
    assert details(run)["breaker"]["rule"]
    assert left_out(run) > 100
    # a quantity drop over the rows that stay: the stock figures after the merge
    run = await twins.pull(HEADER + "".join(rows(200, qty=0)[:150] + first[150:]),
                           status="held")
    assert "stock" in str(details(run)["breaker"])


async def test_duplicates_keep_the_last_occurrence_either_way_round(twins: Twins) -> None:
    await twins.make()
    first = rows(6000)  # about 300 KiB: the file is parsed in several batches
    await twins.pull(HEADER + "".join(first))
    body = [rows(1, 10, qty=1)[0],  # E10 changed in the first batch ...
            *first,  # (E20 unchanged in the first batch ...)
            rows(1, 20, qty=2)[0],  # ... and changed in the last
            first[10]]  # ... and unchanged in the last
    run = await twins.pull(HEADER + "".join(body))
    assert run["duplicates"] == 3
    items = await twins.items(0)
    assert (items["E10"][4], items["E20"][4]) == (5, 2)
    assert run["updated"] == 1
    assert left_out(run) > 5000


async def test_a_number_spelled_otherwise_is_unchanged_and_then_left_out(twins: Twins
                                                                       ) -> None:
    await twins.make()
    await twins.pull(HEADER + "".join(rows(40, price="{i}.5")))
    run = await twins.pull(HEADER + "".join(rows(40, price="{i}.50")))
    # 1.5 and 1.50 are the same price: nothing to write but the new text's fingerprint
    assert (run["updated"], run["unchanged"]) == (0, 40)
    assert left_out(run) == 0
    run = await twins.pull(HEADER + "".join(rows(40, price="{i}.50")))
    assert left_out(run) == 40


async def test_a_value_from_null_to_empty(twins: Twins) -> None:
    await twins.make(resource_type="json", mapping={"fields": {"externalId": "id"}})
    docs: list[dict[str, Any]] = [{"id": f"J{i}", "name": f"n{i}", "mpn": None,
                                   "inventoryQuantity": 3} for i in range(30)]
    await twins.pull(orjson.dumps(docs), content_type="application/json")
    for d in docs[:10]:
        d["mpn"] = ""
    await twins.pull(orjson.dumps(docs), content_type="application/json")
    for d in docs[:5]:
        d["mpn"] = "M"
    run = await twins.pull(orjson.dumps(docs), content_type="application/json")
    assert run["updated"] == 5
    assert (await twins.items(0))["J1"][10] == "M"


async def test_a_mapping_that_adds_an_attribute_rewrites_every_row_once(
        twins: Twins, pool: asyncpg.Pool) -> None:
    header = HEADER.rstrip("\n") + ",part\n"  # `part` maps to nothing by itself
    body = header + "".join(r.rstrip("\n") + f",{'M' if n % 3 else ''}{n}\n"
                            for n, r in enumerate(rows(60)))
    await twins.make()
    await twins.pull(body)
    assert all(v[10] is None for v in (await twins.items(0)).values())
    run = await twins.pull(body)
    assert left_out(run) == 60
    for feed_id in twins.ids:
        await pool.execute("""UPDATE inventory_feeds SET mapping = '{"fields": {"mpn": "part"}}'
                              WHERE id = $1""", feed_id)
    run = await twins.pull(body)  # every row staged once, and written: mpn is new
    assert (left_out(run), run["updated"]) == (0, 60)
    assert (await twins.items(0))["E4"][10] == "M4"
    run = await twins.pull(body)
    assert left_out(run) == 60


async def test_any_other_write_forgets_the_fingerprint(twins: Twins,
                                                      pool: asyncpg.Pool) -> None:
    await twins.make()
    body = HEADER + "".join(rows(30))
    await twins.pull(body)
    for feed_id in twins.ids:
        await pool.execute(
            "UPDATE inventory_feed_variants SET inventory_quantity = 99 "
            "WHERE inventory_feed_id = $1 AND external_id = 'E3'", feed_id)
        await pool.execute(
            "UPDATE inventory_feed_variants SET inventory_quantity_override = 'manual' "
            "WHERE inventory_feed_id = $1 AND external_id = 'E4'", feed_id)
    prints = await twins.fingerprints()
    assert (prints["E3"], prints["E4"]) == (None, None)
    assert prints["E5"] is not None
    run = await twins.pull(body)
    assert run["updated"] == 1  # E3 back to the file's 5; E4's override keeps its own
    assert left_out(run) == 28
    items = await twins.items(0)
    assert items["E3"][4] == 5


async def test_columns_left_unwritten_store_no_fingerprint(twins: Twins) -> None:
    await twins.make(resource_type="json", mapping={"fields": {"externalId": "code"}})
    first: Sequence[dict[str, Any]] = [
        {"code": f"K{i}", "inventoryQuantity": 5, "name": "Lamp"} for i in range(20)]
    await twins.pull(orjson.dumps(first), content_type="application/json")
    later = [{"code": f"K{i}", "inventoryQuantity": 2} for i in range(20)]  # no name
    run = await twins.pull(orjson.dumps(later), content_type="application/json")
    assert "name" in details(run)["unwritten"]
    assert run["updated"] == 20
    assert set((await twins.fingerprints()).values()) == {None}
    run = await twins.pull(orjson.dumps(later), content_type="application/json")
    assert (run["unchanged"], left_out(run)) == (20, 0)


async def test_a_key_staged_again_after_its_segment_was_merged_merges_the_file_whole(
        twins: Twins) -> None:
    await twins.make(fetch_cleanup="enabled")
    first = rows(3000)
    await twins.pull(HEADER + "".join(first))
    body = [*first[:2990], rows(1, 0, qty=3)[0]]  # E0 twice; 10 gone
    for i in range(0, 400, 10):  # 40 changed, a tenth of the first rows
        body[i] = rows(1, i, qty=1)[0]
    run = await twins.pull(HEADER + "".join(body))
    assert (run["updated"], run["duplicates"], run["zeroed"]) == (40, 1, 10)
    assert (await twins.items(0))["E0"][4] == 3
    if twins.segment_rows:  # the first rows were merged before E0 came again
        assert "segments_restarted" in details(run)
        assert segments(run) == 0
    run = await twins.pull(HEADER + "".join(body))
    assert (run["updated"], run["unchanged"]) == (0, 2990)


async def test_a_refresh_that_changes_most_rows_is_merged_whole(twins: Twins) -> None:
    await twins.make(fetch_cleanup="enabled")
    await twins.pull(HEADER + "".join(rows(600)))
    body = rows(600, qty=6)
    for i in range(0, 600, 4):  # a quarter unchanged
        body[i] = rows(1, i)[0]
    run = await twins.pull(HEADER + "".join(body))
    assert (run["updated"], run["unchanged"]) == (450, 150)
    assert segments(run) == 0  # 3 rows in 4 changed: probing for each costs more


async def test_items_that_may_connect_are_judged_over_the_whole_file(
        twins: Twins, pool: asyncpg.Pool) -> None:
    """New items, and unlinked ones whose SKU changes, connect as one: a store variant two
    items of the file match (far apart: in different segments) links neither."""
    await pool.execute("INSERT INTO variants (sku) SELECT 'SKU' || n FROM "
                       "generate_series(5000, 5003) AS n UNION ALL SELECT 'NEW7'")
    await twins.make(fetch_cleanup="enabled")
    first = rows(2000)
    await twins.pull(HEADER + "".join(first))
    body = list(first)
    for i in range(0, 2000, 20):  # 100 changed, unlinked: their SKU stays
        body[i] = rows(1, i, qty=1)[0]
    body[100] = "E100,SKU5000,,Item 100,1.50,,5,1\n"  # an SKU the store has: links
    body[700] = "E700,NEW7,,Item 700,1.50,,5,1\n"  # ... the same variant as E1900
    body[1900] = "E1900,NEW7,,Item 1900,1.50,,5,1\n"
    body += rows(3, 5001)  # new, linked (SKU5001..SKU5003)
    run = await twins.pull(HEADER + "".join(body))
    assert (run["inserted"], run["connected"], run["ambiguous"]) == (3, 4, 2)
    items = await twins.items(0)
    assert items["E100"][-2] is not None  # variant_id
    assert items["E700"][-2] is None
    if twins.segment_rows:
        assert segments(run) > 3


async def test_a_refresh_cut_after_its_first_segments_leaves_everything_as_it_was(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments merged while the file streamed are in the run's transaction: a download
    that stalls after them rolls them back (items, history, daily counts) with the run."""
    feed_id = await feeds.make_feed(pool, fetch_cleanup="enabled")
    first = rows(3000)
    feed_server.add("/first.csv", (HEADER + "".join(first)).encode())
    assert (await feeds.pull_once(pool, settings, feed_id,
                                  feed_server.url("/first.csv")))["status"] == "succeeded"
    monkeypatch.setattr(pull, "KNOWN_MIN_ROWS", 1)
    monkeypatch.setattr(pull, "SEGMENT_ROWS", 7)
    monkeypatch.setattr(stream, "PARSE_PIECE", 2048)
    before = await feeds.table_state(pool)
    history = await pool.fetchval("SELECT count(*) FROM variant_inventory_updates")
    body = list(first)
    for i in range(0, 3000, 10):  # 300 changed: about 40 segments
        body[i] = rows(1, i, qty=9)[0]
    data = (HEADER + "".join(body)).encode()
    feed_server.add("/cut.csv", data, stall_after=len(data) * 9 // 10, chunk=4096)
    merged: list[bulk.Segment] = []  # the segments merged before the stall
    merge = bulk.merge_pull

    async def counted(*args: Any, **kwargs: Any) -> bulk.MergeCounts:
        if len(args) > 8 and args[8] is not None:
            merged.append(args[8])
        return await merge(*args, **kwargs)

    monkeypatch.setattr(bulk, "merge_pull", counted)
    fast = replace(settings, fetch_read_timeout_s=0.5)
    run = await feeds.pull_once(pool, fast, feed_id, feed_server.url("/cut.csv"))
    assert run["status"] == "failed"
    assert "timed out" in run["error"]
    assert len(merged) > 10
    assert await feeds.table_state(pool) == before
    assert await pool.fetchval("SELECT count(*) FROM variant_inventory_updates") == history
    # the same file whole: merged in segments
    feed_server.add("/whole.csv", data)
    run = await feeds.pull_once(pool, settings, feed_id, feed_server.url("/whole.csv"))
    assert (run["status"], run["updated"]) == ("succeeded", 300)
    assert segments(run) > 10
