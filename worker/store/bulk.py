"""The bulk core: COPY rows into a temp staging table, then one set-based merge."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.constants import LOCK_CLASS_FEED_MERGE, LOCK_CLASS_PROVIDER_DAY
from worker.fingerprints import Known, Seen
from worker.model import Feed
from worker.store.db import Conn, is_citus
from worker.store.queries import q

_SQL = "pull.sql"

# One row of load_known in COPY's binary format: a field count, then each field's length
# and value (id bigint, fingerprint bigint, no fingerprint boolean, tracked integer).
_KNOWN_ROW = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                       ("fp", ">i8"), ("l3", ">i4"), ("none", "u1"), ("l4", ">i4"),
                       ("tracked", ">i4")])
_COPY_HEADER = 19  # signature (11), flags (4), header extension length (4)
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
# One row of copy_unseen: a field count, the field's length, the id.
_ID_ROW = np.dtype([("n", ">i2"), ("len", ">i4"), ("id", ">i8")])


@dataclass(frozen=True)
class MergeOptions:
    """What a merge does besides writing the file's rows."""

    run_id: int | None      # None: a dry run, nothing is recorded against a run
    cleanup: bool           # zero the feed's items the file no longer has
    history: bool           # record quantity and price changes (variant_inventory_updates)


@dataclass(frozen=True)
class MergeCounts:
    distinct: int
    inserted: int
    updated: int
    held: int = 0           # held back by the daily SKU limit
    zeroed: int = 0
    connected: int = 0
    ambiguous: int = 0
    ambiguous_skus: tuple[str, ...] = ()
    items_before: int = 0   # the feed's available items before the merge
    stock_before: int = 0   # ... and their tracked quantity
    stock_after: int = 0
    matched_ids: tuple[int, ...] = ()  # merge_seen: items a dropped row may stand for too

    @property
    def unchanged(self) -> int:
        return self.distinct - self.inserted - self.updated - self.held

    def __add__(self, other: MergeCounts) -> MergeCounts:
        """Two merges' counts of different rows (a segmented merge's segments)."""
        a, b = self, other
        return MergeCounts(
            a.distinct + b.distinct, a.inserted + b.inserted, a.updated + b.updated,
            a.held + b.held, a.zeroed + b.zeroed, a.connected + b.connected,
            a.ambiguous + b.ambiguous,
            tuple(sorted({*a.ambiguous_skus, *b.ambiguous_skus})[:20]),
            a.items_before + b.items_before, a.stock_before + b.stock_before,
            a.stock_after + b.stock_after, a.matched_ids + b.matched_ids)


@dataclass(frozen=True)
class Segment:
    """A segment of a refresh merged while its file streams (merge_segment): its staged
    rows' positions (after `after`, up to `upto`; None: to the end)."""

    after: int
    upto: int | None
    first: bool  # the run's first segment: makes the notes' tables, analyzes staging

    @property
    def last(self) -> bool:
        return self.upto is None


async def create_staging(conn: Conn) -> None:
    """The connection's temp tables for a run's rows (and merge_seen's unseen items),
    emptied when the transaction ends: one round trip."""
    await conn.execute(q(_SQL, "create_staging"))


async def copy_unseen(conn: Conn, ids: np.ndarray) -> None:
    """The ids into pull_unseen, as COPY binary built from the array (no Python object
    per id)."""
    rows = np.empty(len(ids), _ID_ROW)
    rows["n"], rows["len"], rows["id"] = 1, 8, ids
    data = b"".join((_COPY_SIGNATURE, rows.tobytes(), b"\xff\xff"))
    del rows
    await conn.copy_to_table("pull_unseen", source=io.BytesIO(data), format="binary")


async def copy_rows(
    conn: Conn, columns: Sequence[str], chunks: AsyncIterator[bytes],
    table: str = "pull_staging"
) -> None:
    """Stream rows in COPY's text format (tab-separated, blank = NULL) into staging (or
    pull_secondary: a feed's second file)."""
    assert table in ("pull_staging", "pull_secondary")
    await conn.copy_to_table(table, source=chunks, columns=list(columns), format="text",
                             null="")


# A first import that connects its items to a store with variants is merged as any pull
# (its inserts carry the links): connecting after the COPY writes each linked item a
# second time, which costs more than the COPY saves (a 1M-row import with a quarter of
# its items linked: about 8 s against 3). Tests turn it on to check the connecting.
CONNECT_AFTER_COPY = False


async def copy_items(
    conn: Conn, columns: Sequence[str], chunks: AsyncIterator[bytes]
) -> None:
    """A first import's rows, in COPY's text format, straight into the items table
    (worker/direct.py)."""
    await conn.copy_to_table("inventory_feed_variants", source=chunks, columns=list(columns),
                             format="text", null="")


async def start_direct(conn: Conn, feed_id: int, run_id: int | None,
                       connecting: bool) -> str | None:
    """For a feed with no items: takes its merge lock and, if it is still empty, returns
    the order time of what the run writes (COPY text): its rows may then go straight
    in. None (and no lock) for a feed with items, or (`connecting`: by SKU or barcode)
    when the store has variants and CONNECT_AFTER_COPY is off."""
    found = await conn.fetchrow(q(_SQL, "feed_empty"), feed_id)
    assert found is not None
    if not found["empty"] or (connecting and found["store"] and not CONNECT_AFTER_COPY):
        return None
    await conn.execute(q(_SQL, "lock_feed"), LOCK_CLASS_FEED_MERGE, feed_id % (2**31))
    row = await conn.fetchrow(q(_SQL, "direct_start"), feed_id, run_id)
    assert row is not None
    return str(row["ordered_at"]) if row["empty"] else None


async def finish_direct(conn: Conn, feed: Feed, rows: int, work_mem: str) -> MergeCounts:
    """After a first import's rows went in (worker/direct.py): its items connect to the
    store's variants, and its counts (each of the feed's items is new). rows: about how
    many items; planned as a merge of as many rows (the table's statistics do not know
    them yet: nested loops over them would take for ever). The fingerprints stay even
    where the merge's mask leaves some of the mapper's columns unwritten: an item a row
    inserts is what its text makes, whatever the mask (only an update keeps other
    values)."""
    large = rows >= LARGE_MERGE_ROWS
    await conn.fetchrow(q(_SQL, "merge_settings"), work_mem, "off" if large else "on",
                        "force_custom_plan" if large or is_citus(conn) else "force_generic_plan",
                        LOCK_CLASS_FEED_MERGE, feed.id % (2**31))
    if large:
        await conn.execute(q(_SQL, "index_scans"), "off")
        if is_citus(conn):
            await conn.execute(q(_SQL, "workers_hash_joins"))
            await conn.execute(q(_SQL, "analyze_items"))
    row = await conn.fetchrow(q(_SQL, "direct_finish"), feed.id, feed.automatically_connect,
                              feed.automatically_connect_by_barcode, feed.sku_prefix,
                              feed.automatically_connect_prefix == "prefixOnly",
                              feed.case_insensitive_skus)
    assert row is not None
    if large:
        await conn.execute(q(_SQL, "index_scans"), "on")
    return MergeCounts(row["items"], row["items"], 0, connected=row["connected"],
                       ambiguous=row["ambiguous"],
                       ambiguous_skus=tuple(row["ambiguous_skus"] or ()),
                       stock_after=row["stock"])


async def join_secondary(conn: Conn, feed_id: int, owned: int, by_sku: bool
                         ) -> tuple[int, int, int]:
    """The second file's rows (pull_secondary, keyed by external_id) joined into
    staging: the columns it owns (`owned`, a mask) from its row of the key (the last
    occurrence), else from the stored item, else as staged. by_sku: the key is the
    staged rows' vendor_sku. Returns the staged rows it matched and did not, and its keys
    no staged row has."""
    row = await conn.fetchrow(q(_SQL, "join_secondary"), feed_id, owned, by_sku)
    assert row is not None
    return row["matched"], row["unmatched"], row["unmatched_secondary"]


# Up to this many bytes, the fingerprints are sorted in the worker (32 bytes an item at
# the peak); a larger feed's come sorted from Postgres (16 bytes an item, the sort about
# 0.25 s per million items there).
SORT_HERE_BYTES = 48 * 2**20


class _KnownReader:
    """load_known's COPY output, taken a piece at a time into growing arrays."""

    def __init__(self, expect: int) -> None:
        self.fps = np.empty(max(expect, 1024), np.int64)
        self.ids = np.empty_like(self.fps)
        self.n = 0  # items with a fingerprint so far
        self.unknown: list[np.ndarray] = []  # ids of the items without one
        self.available = 0
        self.stock = 0
        self.buf = bytearray()
        self.header = True  # the COPY header is still to come

    async def take(self, data: bytes) -> None:
        buf = self.buf
        buf.extend(data)
        if self.header:
            if len(buf) < _COPY_HEADER:
                return
            del buf[:_COPY_HEADER]
            self.header = False
        whole = len(buf) // _KNOWN_ROW.itemsize
        if not whole:
            return
        rows = np.frombuffer(buf, _KNOWN_ROW, whole)
        has = rows["none"] == 0
        n, k = self.n, int(has.sum())
        if n + k > len(self.fps):
            size = max(len(self.fps) + len(self.fps) // 4, n + k)
            self.fps, self.ids = np.resize(self.fps, size), np.resize(self.ids, size)
        self.fps[n:n + k] = rows["fp"][has]
        self.ids[n:n + k] = rows["id"][has]
        if k < whole:
            self.unknown.append(rows["id"][~has].astype(np.int64))
        self.n = n + k
        self.available += whole
        self.stock += int(rows["tracked"].sum(dtype=np.int64))
        del rows, has  # no view of the buffer may remain when it shrinks
        del buf[:whole * _KNOWN_ROW.itemsize]

    def known(self, sort: bool) -> Known:
        if bytes(self.buf) != b"\xff\xff":  # the trailer: a field count of -1
            raise RuntimeError(
                f"unexpected end of the fingerprints' COPY ({len(self.buf)} bytes)")
        fps, ids = self.fps[:self.n], self.ids[:self.n]
        if sort:
            order = np.argsort(fps)
            fps, ids = fps[order], ids[order]
        unknown = np.concatenate(self.unknown) if self.unknown else np.zeros(0, np.int64)
        return Known(fps, ids, unknown, self.available, self.stock)


async def load_known(conn: Conn, feed_id: int, expect: int, work_mem: str) -> Known:
    """The feed's available items' fingerprints and ids (`expect`: about how many), read
    as COPY binary a piece at a time into arrays, with no Python object per item."""
    reader = _KnownReader(expect)
    sort_here = expect * 32 <= SORT_HERE_BYTES
    if not sort_here:
        await conn.execute(q(_SQL, "set_work_mem"), work_mem)
    await conn.copy_from_query(q(_SQL, "load_known" if sort_here else "load_known_sorted"),
                               feed_id, output=reader.take, format="binary")
    return reader.known(sort=sort_here)


async def daily_allowances(conn: Conn, limits: Mapping[int, int]
                           ) -> tuple[dict[int, int], dt.date]:
    """The items each provider (id -> daily SKU limit) may still write today, and the UTC
    day. Their writers are serialised until the transaction ends (locks in id order)."""
    day = dt.datetime.now(dt.UTC).date()
    if not limits:
        return {}, day
    providers = sorted(limits)
    for provider in providers:
        await conn.execute(q(_SQL, "lock_provider"), LOCK_CLASS_PROVIDER_DAY,
                           provider % (2**31))
    used = {r["provider_id"]: r["used"]
            for r in await conn.fetch(q(_SQL, "daily_used", is_citus(conn)), providers, day)}
    return {p: max(0, limits[p] - used.get(p, 0)) for p in providers}, day


# From here on, the merge is planned without nested loops, for its staged rows' statistics
# (ANALYZE) and values; below, one plan per connection serves every merge.
LARGE_MERGE_ROWS = 20_000


async def merge_pull(conn: Conn, feed: Feed, column_mask: int, work_mem: str,
                     opts: MergeOptions, rows: int, fingerprinted: bool = False,
                     seen: Seen | None = None, segment: Segment | None = None
                     ) -> MergeCounts:
    """The merge of the staged rows (`rows` of them). fingerprinted: store their
    fingerprints with the items. seen: the unchanged rows left out of staging (merge_seen
    then reads only the feed's items that the file's other rows or the cleanup need; a
    segment's merge has it with its last segment). segment: merge those staged rows
    (merge_segment; never on a Citus cluster)."""
    large = rows >= LARGE_MERGE_ROWS
    if segment is not None and segment.first:
        await conn.execute(q(_SQL, "create_segments"))
    if large and (segment is None or segment.first or segment.last):
        await conn.execute(q(_SQL, "analyze_staging"))
    if is_citus(conn):  # whatever its size: a worker may not have the shard's statistics
        await conn.execute(q(_SQL, "workers_hash_joins"))
    # the merge's settings, and the feed's lock (writers of one feed, one at a time)
    await conn.fetchrow(q(_SQL, "merge_settings"), work_mem, "off" if large else "on",
                        "force_custom_plan" if large or is_citus(conn) else "force_generic_plan",
                        LOCK_CLASS_FEED_MERGE, feed.id % (2**31))
    limit = feed.daily_sku_limit
    allowances, day = await daily_allowances(
        conn, {feed.provider_id: limit} if limit is not None else {})
    if seen is not None:
        await copy_unseen(conn, seen.unseen_ids)
    args = (feed.id, column_mask, opts.run_id, opts.cleanup, opts.history,
            allowances.get(feed.provider_id), feed.provider_id, day,
            feed.automatically_connect, feed.automatically_connect_by_barcode,
            feed.sku_prefix, feed.automatically_connect_prefix == "prefixOnly",
            feed.case_insensitive_skus, fingerprinted)
    if segment is not None:
        assert limit is None
        assert (seen is not None) == segment.last
        row = await conn.fetchrow(q(_SQL, "merge_segment"), *args, False, segment.after,
                                  segment.upto, segment.last)
    else:
        query = q(_SQL, "merge" if seen is None else "merge_seen", is_citus(conn))
        row = await conn.fetchrow(query, *args, seen is not None)
    if row is None:  # pragma: no cover - the query always returns one row
        raise RuntimeError("merge returned no row")
    matched = row["matched_ids"]
    if segment is not None and segment.last:
        matched = await conn.fetchval(q(_SQL, "segment_matched"))
    return MergeCounts(
        row["distinct_rows"], row["inserted"], row["updated"], row["held"], row["zeroed"],
        row["connected"], row["ambiguous"], tuple(row["ambiguous_skus"] or ()),
        row["items_before"], row["stock_before"], row["stock_after"], tuple(matched or ()))
