"""One pull run: download -> decode -> CSV -> map -> COPY into staging -> merge -> record.

Download, parsing and COPY overlap: a producer task turns the file into CSV-encoded
batches and a bounded queue hands them to the COPY, so memory stays flat and Postgres
works while Python parses. All writes of the run share one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from worker import logs
from worker.errors import DeadlineExceeded, FeedError, Held, LeaseLost, NotModified
from worker.gcpause import gc_paused
from worker.mapping import Mapper
from worker.model import Feed, PullJob, RunReport
from worker.parsers.csv import CsvBatch
from worker.pipeline import breaker, formats
from worker.pipeline.rejects import RejectSink
from worker.retry import Failure, RetryPolicy, classify, retrying
from worker.retry import describe as describe_error
from worker.settings import Settings
from worker.sources import open_source
from worker.sources.decompress import decompressed
from worker.sources.transfer import Transfer
from worker.store import bulk, runs
from worker.store.db import Conn
from worker.urls import mask, scrub

log = logs.get(__name__)

Progress = Callable[[int, int], None]  # (bytes read, rows read)


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | skipped | held | dry-run
    report: RunReport
    error: str | None = None  # the reason, when failed, skipped or held


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction so that all of it rolls back."""


def feed_url(feed: Feed, override: str | None = None) -> str:
    url = override or feed.resource_location
    if not url:
        raise FeedError(f"feed {feed.id} has no resource_location to pull from")
    return url


async def execute(pool: asyncpg.Pool, settings: Settings, job: PullJob,
                  progress: Progress | None = None) -> Outcome:
    """Run the pull; the run row ends succeeded, failed, held or skipped. A transient
    failure (the network, the database) is tried again with backoff, up to
    FEED_WORKER_PULL_RETRY_ATTEMPTS, each attempt recorded on the run; a permanent one
    fails the run at once; the whole run, retries included, has a deadline. Raises
    LeaseLost / CancelledError."""
    started = time.perf_counter()
    if job.feed.cache_imports and job.previous is None:
        last = await runs.last_validators(pool, job.feed.id)
        if last is not None:
            job = dataclasses.replace(job, previous=last[1])
    lease = Lease(pool, settings, job)
    heartbeat = asyncio.create_task(lease.keep(), name=f"lease-{job.run_id}")
    if job.dry_run:  # no run row to keep: nothing of a dry run stays in the database
        heartbeat.cancel()
    policy = dataclasses.replace(RetryPolicy.from_settings(settings),
                                 attempts=settings.pull_retry_attempts)
    deadline_s = job.feed.run_deadline_s or settings.run_deadline_s
    tried: list[dict[str, Any]] = []
    report = RunReport()
    rejects = _sink(settings)
    limit = asyncio.timeout(deadline_s)
    try:
        async with limit:
            while True:
                report, rejects = RunReport(), _sink(settings)
                if tried:
                    report.details["attempts"] = list(tried)
                try:
                    return await _attempt(pool, settings, job, report, rejects, progress,
                                          lease, heartbeat, started)
                except _Retry as retry:
                    cause = retry.cause
                    error = scrub(describe_error(cause), job.url)
                    if len(tried) + 1 >= policy.attempts:
                        tried.append({"attempt": len(tried) + 1, "error": error[:500]})
                        report.details["attempts"] = tried
                        return await _fail(pool, settings, job, report, rejects, started,
                                           f"gave up after {len(tried)} attempts: {error}")
                    wait = policy.delay(len(tried) + 1)
                    after = getattr(cause, "retry_after_s", None)
                    if isinstance(after, (int, float)) and after > wait:
                        wait = float(after)
                    tried.append({"attempt": len(tried) + 1, "error": error[:500],
                                  "retry_in_s": round(wait, 3)})
                    log.warning("run.retry", run_id=job.run_id, feed_id=job.feed.id,
                                attempt=len(tried), retry_in_s=round(wait, 3), error=error)
                    if not job.dry_run:
                        with contextlib.suppress(Exception):  # the final record has them too
                            await runs.record_attempts(pool, job.run_id, job.owner, tried)
                    await asyncio.sleep(wait)
    except TimeoutError:
        if not limit.expired():
            raise
        report.details["attempts"] = tried
        return await _fail(pool, settings, job, report, rejects, started,
                           f"the run took longer than its deadline of {deadline_s:g} s "
                           "(FEED_WORKER_RUN_DEADLINE_S, or the feed's run_deadline_s)")
    finally:
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


class _Retry(Exception):
    """An attempt failed on a transient error: the run may try again."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _sink(settings: Settings) -> RejectSink:
    return RejectSink(settings.max_stored_rejects, settings.max_reject_raw_chars)


async def _fail(pool: asyncpg.Pool, settings: Settings, job: PullJob, report: RunReport,
                rejects: RejectSink, started: float, error: str) -> Outcome:
    """Record the run as failed (waiting for the database a while if it is away)."""
    report.timings["total_s"] = round(time.perf_counter() - started, 3)
    if not job.dry_run:
        await retrying(RetryPolicy.from_settings(settings),
                       lambda: _record_failure(pool, job, report, rejects, error),
                       what="recording a failed run")
    log.warning("run.failed", run_id=job.run_id, feed_id=job.feed.id, error=error)
    return Outcome("failed", report, error)


async def _attempt(pool: asyncpg.Pool, settings: Settings, job: PullJob, report: RunReport,
                   rejects: RejectSink, progress: Progress | None, lease: Lease,
                   heartbeat: asyncio.Task[None], started: float) -> Outcome:
    """One try at the whole pull (download, parse, COPY, merge) in one transaction.
    Raises _Retry for a transient failure."""
    work = asyncio.create_task(_write(pool, settings, job, report, rejects, progress, lease),
                               name=f"pull-{job.run_id}")
    try:
        watched = {work} if job.dry_run or heartbeat.done() else {heartbeat, work}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if work not in done:
            if not heartbeat.cancelled() and heartbeat.exception() is not None:
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                heartbeat.result()  # raises LeaseLost (or what stopped it)
            await asyncio.wait({work})  # the renewals ended: the last transaction checks
        work.result()
    except _DryRun:
        report.timings["total_s"] = round(time.perf_counter() - started, 3)
        return Outcome("dry-run", report, report.details.get("held"))
    except Held as exc:
        report.timings["total_s"] = round(time.perf_counter() - started, 3)
        report.rejected = rejects.count
        async with pool.acquire() as conn, conn.transaction():
            if await runs.hold_run(conn, job.run_id, job.owner, report, str(exc)):
                await runs.store_rejects(conn, job.run_id, rejects.kept)
        log.warning("run.held", run_id=job.run_id, feed_id=job.feed.id, reason=str(exc))
        return Outcome("held", report, str(exc))
    except NotModified as exc:
        report.timings["total_s"] = round(time.perf_counter() - started, 3)
        async with pool.acquire() as conn:
            await runs.skip_run(conn, job.run_id, job.owner, report, str(exc))
        log.info("run.skipped", run_id=job.run_id, feed_id=job.feed.id, reason=str(exc))
        return Outcome("skipped", report, str(exc))
    except (asyncio.CancelledError, LeaseLost):
        raise
    except Exception as exc:
        if classify(exc) is not Failure.PERMANENT:
            raise _Retry(exc) from exc
        if isinstance(exc, FeedError):
            error = scrub(str(exc), job.url)
        elif isinstance(exc, asyncpg.PostgresError):
            # A database refusal of this run's data (a bug if it happens): fail the run.
            error = scrub(f"database refused the run: {type(exc).__name__}: {exc}", job.url)
        else:
            # Anything else (a ValueError from a library, a bug) would fail the same way
            # again: fail the run now with its class and message, rather than leave it
            # running for takeovers to retry until it is failed as abandoned.
            error = scrub(f"unexpected error: {type(exc).__name__}: {exc}", job.url)
            log.error("run.unexpected_error", run_id=job.run_id, exc_info=exc)
        return await _fail(pool, settings, job, report, rejects, started, error)
    finally:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
    return Outcome("succeeded", report)


async def _record_failure(pool: asyncpg.Pool, job: PullJob, report: RunReport,
                          rejects: RejectSink, error: str) -> None:
    report.rejected = rejects.count
    async with pool.acquire() as conn, conn.transaction():
        if await runs.fail_run(conn, job.run_id, job.owner, report, error):
            await runs.store_rejects(conn, job.run_id, rejects.kept)


class Lease:
    """The run's lease, renewed every lease_s / 3 on a connection of its own until the
    run's last transaction. That transaction locks the run row and checks that the run is
    still ours (runs.lock_own_run); a renewal waiting on that lock would then find the run
    ended, which is the run's own doing, not another replica taking it over. So the
    renewals end just before it (`end`)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, job: PullJob) -> None:
        self.pool, self.settings, self.job = pool, settings, job
        self._renewing = asyncio.Lock()
        self._ended = False

    async def keep(self) -> None:
        """Renew until `end`; raises LeaseLost when the run is no longer ours."""
        job = self.job
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            async with self._renewing:
                if self._ended:
                    return
                try:
                    ours = await runs.renew_lease(self.pool, job.run_id, job.owner,
                                                  self.settings.lease_s)
                except Exception as exc:  # the database away: the run's retries wait for it
                    if classify(exc) is Failure.PERMANENT:
                        raise
                    log.info("run.lease_not_renewed", run_id=job.run_id,
                             error=describe_error(exc))
                    continue
                if not ours:
                    raise LeaseLost(f"run {job.run_id} was taken over by another replica")

    async def end(self) -> None:
        """No renewal from now on; waits for the one in flight, if any."""
        async with self._renewing:
            self._ended = True


async def _write(pool: asyncpg.Pool, settings: Settings, job: PullJob, report: RunReport,
                 rejects: RejectSink, progress: Progress | None, lease: Lease) -> None:
    t0 = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await bulk.create_staging(conn)
        stream = _Stream(settings, job, report, rejects, progress)
        await stream.run(conn)
        t1 = time.perf_counter()
        report.timings["stream_s"] = round(t1 - t0, 3)
        report.rows_read = stream.rows_read
        report.rejected = rejects.count
        cleanup = job.feed.fetch_cleanup == "enabled"
        if stream.mapper is None and not (cleanup and job.force and report.bytes == 0):
            empty = stream.rows_read == 0 and report.bytes == 0
            if empty and cleanup:
                trip = breaker.empty_file(stream.rows_read, report.bytes)
                report.details["breaker"] = breaker.details([trip])
                raise Held(trip.reason)
            raise FeedError("the file is empty" if empty else "the file has no header row")
        if stream.valid == 0 and rejects.count > 0:
            raise FeedError(f"no valid rows: all {rejects.count} rows were rejected "
                            f"(first: {rejects.first()})")
        mask = stream.mapper.mask if stream.mapper is not None else 0
        opts = bulk.MergeOptions(None if job.dry_run else job.run_id, cleanup,
                                 settings.item_history)
        counts = await bulk.merge_pull(conn, job.feed, mask, settings.merge_work_mem, opts,
                                       stream.valid)
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
            raise _DryRun
        await lease.end()
        if not await runs.lock_own_run(conn, job.run_id, job.owner):
            raise LeaseLost(f"run {job.run_id} was taken over by another replica")
        report.timings["total_s"] = round(time.perf_counter() - t0, 3)
        await runs.finish_run(conn, job.run_id, "succeeded", report)
        await runs.store_rejects(conn, job.run_id, rejects.kept)


_PAGE_COUNTS = ("nul_lines", "nul_records")
# Bytes handed to a parser at a time: the records of 1 MiB at once left the CPU's caches
# behind, 128 KiB parses a 1M-item JSON feed in 5.1 s instead of 7.1 s, CSV 7% faster
# (measured; 64-256 KiB alike).
PARSE_PIECE = 128 * 1024


async def _breaker(conn: Conn, settings: Settings, job: PullJob, report: RunReport,
                   counts: bulk.MergeCounts, stream: _Stream) -> list[breaker.Trip]:
    """The circuit breaker's rules this pull trips (only with cleanup on: the zeroing is
    what they guard), against the feed's limits and its last succeeded pull."""
    last = await runs.last_succeeded_pull(conn, job.feed.id)
    this = breaker.ThisPull(stream.valid, stream.rows_read, report.bytes,
                            report.details.get("compression"))
    return breaker.check(counts, this, last, breaker.limits(job.feed, settings))


class _Stream:
    """The overlapped part of a run: a producer task parses, the COPY consumes."""

    def __init__(self, settings: Settings, job: PullJob, report: RunReport,
                 rejects: RejectSink, progress: Progress | None) -> None:
        self.settings = settings
        self.job = job
        self.report = report
        self.rejects = rejects
        self.progress = progress
        self.records: formats.Records = formats.records_for(job.feed, settings.max_field_chars)
        self.mapper: Mapper | None = None
        self.rows_read = 0
        self.valid = 0
        self._pending: list[str] = []  # COPY text of mapped rows not yet sent
        self._pending_rows = 0
        self._parse_s = 0.0
        self._wait_source_s = 0.0
        self._wait_copy_s = 0.0
        self._download_started: float | None = None

    async def run(self, conn: Conn) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(self.settings.pipeline_queue_batches)
        ready: asyncio.Future[list[str] | None] = asyncio.get_running_loop().create_future()

        async def chunks() -> AsyncIterator[bytes]:
            while (item := await queue.get()) is not None:
                yield item

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._produce(queue, ready), name=f"parse-{self.job.run_id}")
                columns = await ready
                if columns is not None:
                    await bulk.copy_rows(conn, columns, chunks())
        except BaseExceptionGroup as group:
            raise _first_leaf(group) from None
        timings = self.report.timings
        timings["parse_s"] = round(self._parse_s, 3)
        timings["source_wait_s"] = round(self._wait_source_s, 3)
        timings["copy_wait_s"] = round(self._wait_copy_s, 3)

    async def _produce(self, queue: asyncio.Queue[bytes | None],
                       ready: asyncio.Future[list[str] | None]) -> None:
        feed, settings = self.job.feed, self.settings
        url: str | None = self.job.url
        pages = 0
        offset = 0  # records of earlier pages, so positions run on across pages
        clock = time.perf_counter
        while url is not None:
            pages += 1
            records = formats.records_for(feed, settings.max_field_chars)
            self.records = records
            found: list[str] = []
            inflated = 0
            seen: dict[str, Any] = {}
            transfer = Transfer()
            raw = open_source(url, settings, local_files=self.job.local_files,
                              previous=self.job.previous if pages == 1 else None, seen=seen,
                              token=feed.authentication_token, transfer=transfer)
            source = decompressed(self._counted(raw),
                                  settings.max_decompressed_bytes,
                                  feed.mapping.get("zipEntry"), found,
                                  max_ratio=settings.max_inflation_ratio)
            t = clock()
            async with contextlib.aclosing(source):  # type: ignore[type-var]
                async for chunk in source:
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
                    if self.progress is not None:
                        self.progress(self.report.bytes, self.rows_read)
            t1 = clock()
            # A download cut short fails here, before its last records are taken.
            self._take(formats.finish(records, transfer, found[0] if found else None),
                       ready, offset)
            self._parse_s += clock() - t1
            offset = self.rows_read
            link_next = seen.pop("link_next", None)
            if pages == 1 and any(seen.values()):
                self.report.details["validators"] = seen
            compression = found[0] if found else None
            details = self.report.details
            counted = {k: details.get(k, 0) + v for k, v in records.details.items()
                       if k in _PAGE_COUNTS}  # summed over the pages of an API pull
            details.update(records.details, compression=compression, pages=pages, **counted)
            if compression not in (None, "none"):
                self.report.details["inflated_bytes"] = (
                    self.report.details.get("inflated_bytes", 0) + inflated)
            url = formats.next_page(records, url, pages, settings.max_pages, link_next)
        out = self._encode(final=True)
        if not ready.done():
            ready.set_result(None)
        for data in out:
            await queue.put(data)
        await queue.put(None)
        if self.progress is not None:
            self.progress(self.report.bytes, self.rows_read)

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The bytes as downloaded (feed_runs.bytes), before any inflating; the download
        (all its pages) must end within its deadline and, after a grace period, keep an
        average rate (a server trickling bytes just under the read timeout would hold the
        run's slot for ever)."""
        settings = self.settings
        deadline_s = self.job.feed.download_deadline_s or settings.download_deadline_s
        min_rate, grace_s = settings.min_transfer_bytes_per_s, settings.transfer_grace_s
        loop = asyncio.get_running_loop()
        if self._download_started is None:
            self._download_started = loop.time()
        start = self._download_started
        it = aiter(chunks)
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            while True:
                elapsed = loop.time() - start
                left = deadline_s - elapsed
                # the latest the next bytes may come and keep the average at min_rate
                rate_left = (max(grace_s, self.report.bytes / min_rate) - elapsed
                             if min_rate else left)
                limit = asyncio.timeout(max(0.0, min(left, rate_left)))
                try:
                    async with limit:
                        chunk = await anext(it)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not limit.expired():
                        raise
                    self._too_slow(loop.time() - start, deadline_s)
                    raise
                self.report.bytes += len(chunk)
                yield chunk

    def _too_slow(self, elapsed: float, deadline_s: float) -> None:
        got, rate = self.report.bytes, self.settings.min_transfer_bytes_per_s
        if elapsed >= deadline_s:
            raise DeadlineExceeded(
                f"the download took longer than its deadline of {deadline_s:g} s "
                f"({got:,} bytes received; FEED_WORKER_DOWNLOAD_DEADLINE_S, or the feed's "
                "download_deadline_s)")
        raise DeadlineExceeded(
            f"the download averaged {got / elapsed:,.0f} bytes/s over {elapsed:.0f} s "
            f"({got:,} bytes), below FEED_WORKER_MIN_TRANSFER_BYTES_PER_S ({rate:,})")

    def _set_mapper(self, header: list[str] | None,
                    ready: asyncio.Future[list[str] | None]) -> None:
        feed = self.job.feed
        mapping = formats.mapping_for(feed)
        self.mapper = Mapper(mapping, header, feed.decimal_notation, self.records.delimiter,
                             positions=True)
        ready.set_result(["pos", *self.mapper.columns])

    def _take(self, batch: CsvBatch, ready: asyncio.Future[list[str] | None],
              offset: int) -> None:
        for line, raw, reason in batch.errors:
            self.rows_read += 1
            self.rejects.add(offset + line, raw, reason)
        rows, lines = batch.rows, batch.lines
        if self.mapper is None and (self.records.header is not None
                                    or not formats.needs_header(self.job.feed)):
            self._set_mapper(self.records.header, ready)
        if not rows or self.mapper is None:
            return
        if offset:
            lines = [offset + n for n in lines]
        self.rows_read += len(rows)
        if self.rows_read > self.settings.max_records:
            raise FeedError(f"more than {self.settings.max_records} records "
                            "(FEED_WORKER_MAX_RECORDS)")
        mapped = self.mapper.map(rows, lines)
        for r in mapped.rejects:
            self.rejects.add(r.position, r.raw, r.reason)
        self.valid += mapped.count
        self._pending.append(mapped.text)
        self._pending_rows += mapped.count

    def _encode(self, final: bool) -> list[bytes]:
        if self._pending_rows < self.settings.copy_batch_rows and not final:
            return []
        data = "".join(self._pending).encode()
        self._pending = []
        self._pending_rows = 0
        return [data] if data else []


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def describe(job: PullJob) -> dict[str, object]:
    return {"run_id": job.run_id, "feed_id": job.feed.id, "source": mask(job.url)}
