"""A pull's stream: download -> decompress -> decode -> parse -> map -> COPY into staging.

Download, parsing and COPY overlap: a producer task turns the file into COPY text in
batches and a bounded queue hands them to the COPY, so memory stays flat and Postgres works
while Python parses. Pages of a paginated API follow one another in the same stream. A large
refresh is merged a segment at a time while the file still streams (`segments`): the COPY
stops at each segment's end, the merge runs, and the parser goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from worker.direct import DirectRows
from worker.errors import FeedError
from worker.fingerprints import Fingerprints, Known
from worker.gcpause import gc_paused
from worker.mapping import Mapper
from worker.model import PullJob, RunReport
from worker.parsers import RecordBatch
from worker.parsers.cells import reject_error_cells
from worker.pipeline import formats
from worker.pipeline.meter import DownloadMeter
from worker.pipeline.rejects import RejectSink
from worker.settings import Settings
from worker.sources import open_source
from worker.sources.names import file_rule
from worker.sources.transfer import Transfer
from worker.store import bulk
from worker.store.db import Conn
from worker.urls import FeedUrl

# (bytes downloaded, records read, page, the bytes the download will have reached at the
# end of this page when the transport announced its length, else None)
Progress = Callable[[int, int, int, int | None], None]

_PAGE_COUNTS = ("nul_lines", "nul_records")
# Between a first import's rows copied straight into the items table and those staged
# after a key repeated (never a batch of rows: those are never empty).
_SPILL = b""
# A COPY ended for a large run's pause (PullJob.turns).
_TURN = b" "


@dataclass(frozen=True)
class _Mark:
    """The end of a segment: the rows staged before it are at positions up to `upto`."""

    upto: int


# A segment is merged while the file streams only when at most this share of its rows
# changed (else the rest of the file is merged once it is whole).
MAX_SEGMENT_SHARE = 1 / 3
# Merges a segment's staged rows: (connection, its last position).
SegmentMerge = Callable[[Conn, int], Awaitable[None]]
# Bytes handed to a parser at a time: the records of a whole 1 MiB chunk at once leave the
# CPU's caches behind; a piece of this size keeps them in (the pull benchmarks show it).
PARSE_PIECE = 128 * 1024
# A large run looks whether to pause its parsing (PullJob.turns) once it parsed this long.
PAUSE_EVERY_S = 0.01


class Stream:
    """The overlapped part of a run: a producer task parses, the COPY consumes."""

    def __init__(self, settings: Settings, job: PullJob, report: RunReport,
                 rejects: RejectSink, progress: Progress | None,
                 known: Known | None = None, ordered_at: str | None = None) -> None:
        self.settings = settings
        self.known = known  # the feed's fingerprints: rows found among them are left out
        # A first import's order time: its rows go straight into the items table
        # (worker/direct.py) until a key repeats.
        self._ordered_at = ordered_at
        self.direct: DirectRows | None = None
        self.table = "pull_staging"  # where the rows are copied (a second file's: its own)
        self.job = job
        self.report = report
        self.rejects = rejects
        self.progress = progress
        self.records: formats.Records = formats.records_for(job.feed, settings.max_field_chars,
                                                            formats.zip_limits(settings))
        self.mapper: Mapper | None = None
        self.rows_read = 0
        self.valid = 0
        self._pending: list[str] = []  # COPY text of mapped rows not yet sent
        self._pending_rows = 0  # ... staged rows in it
        self._out: list[bytes | _Mark] = []  # ... sent at the next chance (_SPILL: staged
        # after; a _Mark: a segment's end)
        self._dropped = 0  # rows the fingerprints left out, so far
        self._segment_rows = 0  # with segments: staged rows a segment has (0: none)
        self._on_segment: SegmentMerge | None = None
        self.unmerged = 0  # rows staged since the last segment's end
        self._marks = 0  # segments' ends so far
        self._valid_at_mark = 0  # valid rows at the last one
        self._last_pos = 0
        self._parse_s = 0.0
        self._wait_source_s = 0.0
        self._wait_copy_s = 0.0
        self.meter = DownloadMeter(settings, job.feed, report)  # (and the run's pauses)
        self._turn_at = time.perf_counter()  # when it last looked whether to pause

    def segments(self, rows: int, merge: SegmentMerge) -> None:
        """Merge the staged rows a segment of about `rows` at a time while the file
        streams (a refresh whose unchanged rows are left out: known fingerprints)."""
        self._segment_rows, self._on_segment = rows, merge

    async def run(self, conn: Conn) -> None:
        queue: asyncio.Queue[bytes | _Mark | None] = asyncio.Queue(
            self.settings.pipeline_queue_batches)
        ready: asyncio.Future[list[str] | None] = asyncio.get_running_loop().create_future()
        ends: list[bytes | _Mark | None] = []  # what ended each COPY

        turns = self.job.turns

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                item = await queue.get()
                if item is None or item is _SPILL or isinstance(item, _Mark):
                    ends.append(item)
                    return
                yield item
                if turns is not None and turns.waiting:
                    # small runs are in flight: the COPY ends here, so that the pause that
                    # follows is one of Postgres too (not of the bytes in its socket)
                    ends.append(_TURN)
                    return

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._produce(queue, ready), name=f"parse-{self.job.run_id}")
                columns = await ready
                direct = self.direct
                while columns is not None:
                    copied = time.perf_counter()
                    if direct is not None and not direct.spilled:
                        await bulk.copy_items(conn, direct.columns, chunks())
                    else:
                        await bulk.copy_rows(conn, columns, chunks(), self.table)
                    end = ends[-1]
                    if end is _TURN:
                        assert turns is not None
                        paused = await turns.pause(time.perf_counter() - copied)
                        self.meter.paused_s += paused  # (after the await: the parser's too)
                    elif isinstance(end, _Mark):
                        assert self._on_segment is not None
                        await self._on_segment(conn, end.upto)
                    elif end is not _SPILL:
                        break
        except BaseExceptionGroup as group:
            raise _first_leaf(group) from None
        if self.mapper is not None and self.mapper.applier is not None:
            # what each value rule changed or rejected (run report: details.rules)
            self.report.details["rules"] = dict(self.mapper.applier.counts)
        if self.mapper is not None and self.mapper.skipped:
            # rows left out on purpose, by reason (a Shopify export's image-only rows)
            self.report.details["skipped"] = dict(self.mapper.skipped)
        timings = self.report.timings
        timings["parse_s"] = round(self._parse_s, 3)
        timings["source_wait_s"] = round(self._wait_source_s, 3)
        timings["copy_wait_s"] = round(self._wait_copy_s, 3)
        if self.meter.paused_s:
            timings["paused_s"] = round(self.meter.paused_s, 3)

    async def _produce(self, queue: asyncio.Queue[bytes | _Mark | None],
                       ready: asyncio.Future[list[str] | None]) -> None:
        feed, settings = self.job.feed, self.settings
        url: FeedUrl | None = None  # the next page's; the feed's own is parsed as it opens
        pages = 0
        offset = 0  # records of earlier pages, so positions run on across pages
        clock = time.perf_counter
        while pages == 0 or url is not None:
            pages += 1
            records = formats.records_for(feed, settings.max_field_chars,
                                          formats.zip_limits(settings))
            self.records = records
            inflated = 0
            page_start = self.report.bytes
            download = open_source(url or FeedUrl.parse(self.job.url), settings,
                                   local_files=self.job.local_files,
                                   previous=self.job.previous if pages == 1 else None,
                                   token=feed.authentication_token,
                                   zip_entry=feed.mapping.zip_entry, sheet=feed.mapping.sheet,
                                   meter=self.meter.counted, rule=file_rule(feed.mapping),
                                   source=feed.mapping.source,
                                   export=formats.sheets_export(feed))
            t = clock()
            async with contextlib.aclosing(download):
                async for chunk in download:
                    t1 = clock()
                    self._wait_source_s += t1 - t
                    inflated += len(chunk)
                    with gc_paused():
                        for start in range(0, len(chunk), PARSE_PIECE):
                            piece = chunk[start:start + PARSE_PIECE]
                            self._take(records.feed(piece), ready, offset)
                        out = self._encode(final=False)
                    t = clock()
                    self._parse_s += t - t1
                    for data in out:
                        await queue.put(data)
                    t2 = clock()
                    self._wait_copy_s += t2 - t
                    t = t2
                    self._tell(pages, page_start, download.transfer)
                    t = await self._turn(t)
            t1 = clock()
            compression = download.compression
            # A download cut short fails here, before its last records are taken.
            self._take(formats.finish(records, download.transfer, compression), ready, offset)
            self._parse_s += clock() - t1
            await self._rest(records, queue, ready, offset,
                             functools.partial(self._tell, pages, page_start,
                                               download.transfer))
            self._tell(pages, page_start, download.transfer)  # the page's last records
            offset = self.rows_read
            if pages == 1 and any(download.validators.values()):
                self.report.details["validators"] = download.validators
            if pages == 1:
                self.report.details.update(download.chosen)  # the file a pattern took
            details = self.report.details
            counted = {k: details.get(k, 0) + v for k, v in records.details.items()
                       if k in _PAGE_COUNTS}  # summed over the pages of an API pull
            details.update(records.details, compression=compression, pages=pages, **counted)
            if compression not in (None, "none"):
                self.report.details["inflated_bytes"] = (
                    self.report.details.get("inflated_bytes", 0) + inflated)
            url = formats.next_page(records, download.url, pages, settings.max_pages,
                                    download.link_next)
        out = self._encode(final=True)
        if not ready.done():
            ready.set_result(None)
        for data in out:
            await queue.put(data)
        await queue.put(None)
        if self.progress is not None:  # the whole download: its total is what was read
            self.progress(self.report.bytes, self.rows_read, pages, self.report.bytes)

    async def _rest(self, records: formats.Records,
                    queue: asyncio.Queue[bytes | _Mark | None],
                    ready: asyncio.Future[list[str] | None], offset: int,
                    tell: Callable[[], None]) -> None:
        """The records a parser gives once the file is whole (a spreadsheet's rows)."""
        clock = time.perf_counter
        t = clock()
        for batch in formats.rest(records):
            with gc_paused():
                self._take(batch, ready, offset)
                out = self._encode(final=False)
            t1 = clock()
            self._parse_s += t1 - t
            for data in out:
                await queue.put(data)
            t = clock()
            self._wait_copy_s += t - t1
            tell()
            t = await self._turn(t)
        self._parse_s += clock() - t

    async def _turn(self, t: float) -> float:
        """A large run's pause in parsing while small runs are in flight (job.turns), once
        it has parsed a while; the clock after it."""
        turns = self.job.turns
        if turns is None or t - self._turn_at < PAUSE_EVERY_S:
            return t
        paused = await turns.pause(t - self._turn_at)
        self.meter.paused_s += paused
        self._turn_at = time.perf_counter()
        return self._turn_at

    def _tell(self, page: int, page_start: int, transfer: Transfer) -> None:
        if self.progress is not None:
            total = None if transfer.expected is None else page_start + transfer.expected
            self.progress(self.report.bytes, self.rows_read, page, total)

    def _set_mapper(self, header: list[str] | None,
                    ready: asyncio.Future[list[str] | None]) -> None:
        feed = self.job.feed
        mapping = formats.mapping_for(feed)
        self.mapper = Mapper(mapping, header, feed.decimal_notation, self.records.delimiter,
                             positions=True)
        prints = Fingerprints(self.mapper.columns, self.mapper.mask, self.known)
        self.mapper.fingerprints = prints
        if self._segment_rows and prints.known is not None:
            prints.segmented(True)
        else:
            self._segment_rows = 0
        if self._ordered_at is not None:
            self.direct = DirectRows(feed.id, self.mapper.columns, self._ordered_at)
            self.mapper.direct = self.direct
        ready.set_result(["pos", *self.mapper.columns, "fingerprint"])

    def _take(self, batch: RecordBatch, ready: asyncio.Future[list[str] | None],
              offset: int) -> None:
        if self.mapper is None and (self.records.header is not None
                                    or not formats.needs_header(self.job.feed)):
            self._set_mapper(self.records.header, ready)
        if batch.cell_errors and self.mapper is not None:
            batch = reject_error_cells(batch, self.mapper.sources, self.records.delimiter)
        for line, raw, reason in batch.errors:
            self.rows_read += 1
            self.rejects.add(offset + line, raw, reason)
        rows, lines = batch.rows, batch.lines
        if not rows or self.mapper is None:
            return
        if offset:
            lines = [offset + n for n in lines]
        self.rows_read += len(rows)
        if self.rows_read > self.settings.max_records:
            raise FeedError(f"more than {self.settings.max_records} records "
                            "(FEED_WORKER_MAX_RECORDS)")
        direct = self.direct is not None and not self.direct.spilled
        mapped = self.mapper.map(rows, lines)
        if direct and self.direct is not None and self.direct.spilled:
            # the rows so far went straight in; these and the rest are staged
            self._flush()
            self._out.append(_SPILL)
        for r in mapped.rejects:
            self.rejects.add(r.position, r.raw, r.reason)
        self.valid += mapped.count
        self._pending.append(mapped.text)
        prints = self.mapper.fingerprints
        dropped = prints.dropped if prints is not None else 0
        staged = mapped.count - (dropped - self._dropped)
        self._dropped = dropped
        self._pending_rows += staged
        self.unmerged += staged
        self._last_pos = lines[-1]
        if self._segment_ends():
            assert prints is not None
            if self.unmerged > MAX_SEGMENT_SHARE * (self.valid - self._valid_at_mark):
                # Most rows change here: one merge of the rest (its hash join reads the
                # feed's items once) costs less than probing for each row's item.
                self._segment_rows = 0
                if not self._marks:
                    prints.segmented(False)
                return
            self._flush()
            self._out.append(_Mark(self._last_pos))
            self._marks += 1
            self._valid_at_mark = self.valid
            self.unmerged = 0
            prints.close_segment()

    @property
    def fingerprints(self) -> Fingerprints | None:
        return self.mapper.fingerprints if self.mapper is not None else None

    def _flush(self) -> None:
        data = "".join(self._pending).encode()
        self._pending = []
        self._pending_rows = 0
        if data:
            self._out.append(data)

    def _encode(self, final: bool) -> list[bytes | _Mark]:
        if final or self._pending_rows >= self.settings.copy_batch_rows:
            self._flush()
        out, self._out = self._out, []
        return out

    def _segment_ends(self) -> bool:
        """Whether the rows staged since the last segment are a segment to merge now: enough
        of them, and (XML, JSON) every mapped attribute has matched a record, so that the
        merge's columns are the mapper's whatever the rest of the file holds (a structured
        file's attribute that matches nothing is left unwritten: pipeline/matches.py)."""
        if not self._segment_rows or self.unmerged < self._segment_rows:
            return False
        assert self.mapper is not None
        return (self.job.feed.resource_type not in ("xml", "json")
                or all(self.mapper.matched.values()))


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


