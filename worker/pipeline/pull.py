"""A pull's stages, in one transaction: stream the file into staging (pipeline/stream.py),
merge it into the feed's items, check the circuit breaker, record the run. The envelope
around them (retries, deadlines, the lease, recording how a run ended) is the runner's.

A large refresh (its fingerprints known) merges its staged rows a segment at a time while
the file streams, so that Postgres writes while Python parses; the last segment, the rows
held back for connecting and the cleanup are merged once the file is whole. The feed's merge
lock is then held from the first segment on. A key staged again after its segment was
merged (fingerprints.Repeated) starts the run again, merged whole.
"""

from __future__ import annotations

import dataclasses
import time

import asyncpg

from worker import fingerprints
from worker.errors import FeedError, Held, LeaseLost
from worker.lease import Lease
from worker.model import COLUMN_BIT, Feed, LastPull, PullJob, RunReport, Secondary
from worker.pipeline import breaker, matches
from worker.pipeline.rejects import RejectSink
from worker.pipeline.stream import Progress, Stream
from worker.settings import Settings
from worker.store import bulk, runs
from worker.store.db import Conn, is_citus
from worker.urls import mask

# A feed whose last pull read this many rows loads its fingerprints first and leaves its
# unchanged rows out (worker/fingerprints.py); a smaller one's merge reads its items
# faster than they load.
KNOWN_MIN_ROWS = bulk.LARGE_MERGE_ROWS
# Staged rows a segment of a large refresh has (each planned as a large merge).
SEGMENT_ROWS = bulk.LARGE_MERGE_ROWS


class DryRun(Exception):
    """Raised at the end of a dry run's transaction so that all of it rolls back."""


def feed_url(feed: Feed, override: str | None = None) -> str:
    url = override or feed.resource_location
    if not url:
        raise FeedError(f"feed {feed.id} has no resource_location to pull from")
    return url


async def apply(pool: asyncpg.Pool, settings: Settings, job: PullJob, report: RunReport,
                 rejects: RejectSink, progress: Progress | None, lease: Lease) -> None:
    """The run's one transaction: stream the file into staging, merge it, check the
    circuit breaker, record the run. Raises Held (nothing applied), DryRun (a dry run
    rolled back), LeaseLost, and whatever failed."""
    try:
        await _apply(pool, settings, job, report, rejects, progress, lease, segments=True)
    except fingerprints.Repeated as e:  # rolled back: the file again, merged whole
        fresh = RunReport()
        for f in dataclasses.fields(report):
            setattr(report, f.name, getattr(fresh, f.name))
        rejects.clear()
        await _apply(pool, settings, job, report, rejects, progress, lease, segments=False,
                     restarted=str(e))


class _Segments:
    """A refresh's segments merged while its file streams, and their counts."""

    def __init__(self, settings: Settings, job: PullJob, stream: Stream,
                 opts: bulk.MergeOptions) -> None:
        self.settings, self.job, self.stream, self.opts = settings, job, stream, opts
        self.after = -1  # the last merged segment's last position
        self.merged = 0
        self.counts = bulk.MergeCounts(0, 0, 0)

    async def merge(self, conn: Conn, upto: int) -> None:
        await self._merge(conn, bulk.Segment(self.after, upto, first=not self.merged),
                          SEGMENT_ROWS, None)
        self.after = upto
        self.merged += 1

    async def last(self, conn: Conn, seen: fingerprints.Seen) -> bulk.MergeCounts:
        """The rows staged since the last segment, those held back for connecting, and
        the cleanup; the counts of all segments."""
        await self._merge(conn, bulk.Segment(self.after, None, first=False),
                          self.stream.unmerged, seen)
        return self.counts

    async def _merge(self, conn: Conn, segment: bulk.Segment, rows: int,
                     seen: fingerprints.Seen | None) -> None:
        mapper = self.stream.mapper
        assert mapper is not None
        counts = await bulk.merge_pull(conn, self.job.feed, mapper.mask,
                                       self.settings.merge_work_mem, self.opts, rows, True,
                                       seen, segment)
        self.counts += counts


async def _apply(pool: asyncpg.Pool, settings: Settings, job: PullJob, report: RunReport,
                 rejects: RejectSink, progress: Progress | None, lease: Lease,
                 segments: bool, restarted: str | None = None) -> None:
    t0 = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        if restarted is not None:
            report.details["segments_restarted"] = restarted
        await bulk.create_staging(conn)
        known = await _known(conn, settings, job)
        if known is not None:
            report.timings["known_s"] = round(time.perf_counter() - t0, 3)
        ordered_at = await _first_import(conn, job, known)
        stream = Stream(settings, job, report, rejects, progress, known, ordered_at)
        cleanup = job.feed.fetch_cleanup == "enabled"
        opts = bulk.MergeOptions(None if job.dry_run else job.run_id, cleanup,
                                 settings.item_history)
        parts = None
        if (segments and known is not None and ordered_at is None
                and job.feed.daily_sku_limit is None and not is_citus(conn)):
            parts = _Segments(settings, job, stream, opts)
            stream.segments(SEGMENT_ROWS, parts.merge)
        await stream.run(conn)
        t1 = time.perf_counter()
        report.timings["stream_s"] = round(t1 - t0, 3)
        report.rows_read = stream.rows_read
        report.rejected = rejects.count
        if stream.mapper is None and not (cleanup and job.force and report.bytes == 0):
            empty = stream.rows_read == 0 and report.bytes == 0
            if empty and cleanup:
                trip = breaker.empty_file(stream.rows_read, report.bytes)
                report.details["breaker"] = breaker.details([trip])
                raise Held(trip.reason)
            raise FeedError("the file is empty" if empty else "the file has no header row")
        unwritten = (await _judge(conn, settings, job, report, stream)
                     if stream.mapper is not None else [])
        if stream.valid == 0 and rejects.count > 0:
            raise FeedError(f"no valid rows: all {rejects.count} rows were rejected "
                            f"(first: {rejects.first()})")
        mask = stream.mapper.mask_without(unwritten) if stream.mapper is not None else 0
        second = job.feed.mapping.secondary
        if second is not None and stream.mapper is not None:
            mask |= await _join_secondary(conn, settings, job, report, rejects, second)
            report.rejected = rejects.count  # the second file's too
            t1 = time.perf_counter()  # the merge's time from here
        prints = stream.fingerprints
        segmented = parts is not None and parts.merged > 0
        seen = prints.seen(always=segmented) if prints is not None else None
        left_out = prints.dropped if prints is not None else 0
        if known is not None:
            report.details["left_out"] = left_out  # rows found unchanged by fingerprint
        # The fingerprints are true of an item only when the merge writes every column
        # the mapper staged.
        whole = (stream.mapper is not None and mask == stream.mapper.mask
                 and second is None)
        direct = stream.direct
        if direct is not None:
            counts = await _finish_direct(conn, settings, job, stream, mask, whole, opts)
            report.details["copied"] = direct.rows  # straight into the items table
        elif segmented:
            assert parts is not None
            assert seen is not None
            assert prints is not None
            prints.close_segment()  # the rows staged last: repeats of merged keys?
            assert whole
            counts = await parts.last(conn, seen)
            report.details["segments"] = parts.merged + 1
        else:
            counts = await bulk.merge_pull(conn, job.feed, mask, settings.merge_work_mem,
                                           opts, stream.valid - left_out, whole, seen)
        if seen is not None:
            counts = _with_seen(counts, seen)
        t2 = time.perf_counter()
        report.timings["merge_s"] = round(t2 - t1, 3)
        report.inserted, report.updated = counts.inserted, counts.updated
        report.unchanged, report.skipped = counts.unchanged, counts.held
        report.zeroed, report.connected = counts.zeroed, counts.connected
        report.ambiguous = counts.ambiguous
        report.duplicates = stream.valid - counts.distinct
        report.details.update(columns=stream.mapper.columns if stream.mapper else [])
        if counts.ambiguous_skus:
            report.details["ambiguous_skus"] = list(counts.ambiguous_skus)
        trips = await _breaker(conn, settings, job, report, counts, stream) if cleanup else []
        if trips:
            reason = breaker.reason(trips)
            report.details["breaker"] = breaker.details(trips)
            report.details["forced" if job.force else "held"] = reason
            if not job.force and not job.dry_run:
                raise Held(reason)
        if job.dry_run:
            report.details["dry_run"] = True
            raise DryRun
        await lease.end()
        report.timings["total_s"] = round(time.perf_counter() - t0, 3)
        if not await runs.finish_run(conn, job.run_id, job.owner, "succeeded", report):
            raise LeaseLost(f"run {job.run_id} was taken over by another replica")
        await runs.store_rejects(conn, job.run_id, rejects.kept)


async def _known(conn: Conn, settings: Settings, job: PullJob
                 ) -> fingerprints.Known | None:
    """The feed's fingerprints, for a feed whose last pull was large enough."""
    if job.feed.mapping.secondary is not None:  # an item is not what its row alone makes
        return None
    last = await _last_pull(conn, job)
    if last is None or last.rows_read < KNOWN_MIN_ROWS:
        return None
    return await bulk.load_known(conn, job.feed.id, last.rows_read + last.rows_read // 8,
                                 settings.merge_work_mem)


async def _first_import(conn: Conn, job: PullJob, known: fingerprints.Known | None
                        ) -> str | None:
    """For a pull into a feed with no items (and no daily SKU limit, which judges rows
    in the merge): its order time; its rows then go straight into the items table
    (worker/direct.py) under the feed's merge lock. Looked for in a feed never pulled, or
    one whose last pull was large and that has no available items now."""
    if job.feed.daily_sku_limit is not None or job.feed.mapping.secondary is not None:
        return None
    if known is not None:
        if known.available:
            return None
    elif await _last_pull(conn, job) is not None:
        return None
    feed = job.feed
    return await bulk.start_direct(
        conn, feed.id, None if job.dry_run else job.run_id,
        feed.automatically_connect or feed.automatically_connect_by_barcode)


async def _finish_direct(conn: Conn, settings: Settings, job: PullJob, stream: Stream,
                         mask: int, whole: bool, opts: bulk.MergeOptions
                         ) -> bulk.MergeCounts:
    """A first import's rows are in: those staged after a key repeated are merged
    (into items all new in this run: no cleanup, no history; they connect with the
    rest), then every item connects and is counted as inserted."""
    direct = stream.direct
    assert direct is not None
    feed = job.feed
    if direct.spilled:
        rest = dataclasses.replace(feed, automatically_connect=False,
                                   automatically_connect_by_barcode=False)
        await bulk.merge_pull(conn, rest, mask, settings.merge_work_mem,
                              dataclasses.replace(opts, cleanup=False, history=False),
                              stream.valid - direct.rows, whole)
    return await bulk.finish_direct(conn, feed, stream.valid, settings.merge_work_mem)


async def _join_secondary(conn: Conn, settings: Settings, job: PullJob, report: RunReport,
                          rejects: RejectSink, second: Secondary) -> int:
    """The feed's second file (mapping.secondary), streamed into its own table and
    joined into the staged rows by its key (details.secondary: what it read and
    matched). Returns the mask of the columns it owns."""
    t0 = time.perf_counter()
    feed = dataclasses.replace(job.feed, resource_type=second.resource_type,
                               resource_location=second.url, mapping=second.mapping,
                               delimiter=second.delimiter,
                               csv_has_header=second.csv_has_header, encoding=None,
                               cache_imports=False, authentication_token=None)
    sub_report = RunReport()
    sub_rejects = RejectSink(settings.max_stored_rejects, settings.max_reject_raw_chars)
    sub = Stream(settings, dataclasses.replace(job, feed=feed, url=second.url, previous=None),
                 sub_report, sub_rejects, None)
    sub.table = "pull_secondary"
    await sub.run(conn)
    rejects.take(sub_rejects, "second file: ")
    if sub.mapper is None or sub.valid == 0:
        raise FeedError("the second file (mapping.secondary) has no valid rows"
                        + (f" (first: {sub_rejects.first()})" if sub_rejects.count else ""))
    by_sku = second.join_on == "vendorSku"
    owned = sub.mapper.mask & ~(COLUMN_BIT["vendor_sku"] if by_sku else 0)
    matched, unmatched, unmatched_second = await bulk.join_secondary(
        conn, job.feed.id, owned, by_sku)
    report.details["secondary"] = {
        "join_on": second.join_on, "rows_read": sub.rows_read, "rejected": sub_rejects.count,
        "bytes": sub_report.bytes, "columns": sub.mapper.columns, "matched": matched,
        "unmatched": unmatched, "unmatched_secondary": unmatched_second}
    report.timings["secondary_s"] = round(time.perf_counter() - t0, 3)
    return owned


def _with_seen(counts: bulk.MergeCounts, seen: fingerprints.Seen) -> bulk.MergeCounts:
    """The merge's counts with the rows left out as unchanged. Each stands for an item
    (less those a later row of its key staged after all: the merge counted them); the
    circuit breaker's totals before are the feed's as loaded, and after, those with the
    merge's changes (an item left out is the same before and after)."""
    known = seen.known
    return dataclasses.replace(
        counts, distinct=counts.distinct + seen.items - fingerprints.overlap(
            seen, counts.matched_ids),
        items_before=known.available, stock_before=known.stock,
        stock_after=known.stock + counts.stock_after - counts.stock_before, matched_ids=())


async def _judge(conn: Conn, settings: Settings, job: PullJob, report: RunReport,
                 stream: Stream) -> list[str]:
    """What the records gave each mapped attribute (details.matched): raises FeedError for
    a path of the feed's own that matched nothing, or for a first pull that found no
    records; adds warnings for attributes few records have. Returns the attributes no
    record had that the preset or template names map (details.unwritten): not written."""
    assert stream.mapper is not None
    feed = job.feed
    structured = feed.resource_type in ("xml", "json")
    if structured and stream.rows_read == 0 and report.bytes > 0:
        # With items already stored the circuit breaker holds an empty pull; before any
        # records were read there is nothing it could compare with.
        last = await _last_pull(conn, job)
        if last is None or last.rows_read == 0:
            raise FeedError(matches.no_records(feed.mapping, feed.resource_type))
    mapper = stream.mapper
    report.details["matched"] = dict(mapper.matched)
    verdict = matches.judge(feed.mapping, feed.resource_type, mapper.matched, mapper.records,
                            settings.min_attribute_match_share)
    if verdict.warnings:
        report.details["warnings"] = [*report.details.get("warnings", ()), *verdict.warnings]
    if verdict.errors:
        raise FeedError("; ".join(verdict.errors))
    if verdict.unwritten:
        report.details["unwritten"] = sorted(verdict.unwritten)
    return sorted(verdict.unwritten)


async def _breaker(conn: Conn, settings: Settings, job: PullJob, report: RunReport,
                   counts: bulk.MergeCounts, stream: Stream) -> list[breaker.Trip]:
    """The circuit breaker's rules this pull trips (only with cleanup on: the zeroing is
    what they guard), against the feed's limits and its last succeeded pull."""
    last = await _last_pull(conn, job)
    this = breaker.ThisPull(stream.valid, stream.rows_read, report.bytes,
                            report.details.get("compression"))
    return breaker.check(counts, this, last, breaker.limits(job.feed, settings))


async def _last_pull(conn: Conn, job: PullJob) -> LastPull | None:
    """The feed's last succeeded pull: as the claim read it, else read now."""
    return job.last_pull if job.last_known else await runs.last_succeeded_pull(conn, job.feed.id)


def describe(job: PullJob) -> dict[str, object]:
    return {"run_id": job.run_id, "feed_id": job.feed.id, "source": mask(job.url)}
