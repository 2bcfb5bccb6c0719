"""A pull run's envelope: the lease, retries of transient failures, the run's deadline,
and recording how the run ended (succeeded, failed, held, skipped). The stages inside it
are pipeline/pull.py's; the runner (a replica's pulls) and `feed-worker import` call
`execute`. It needs no broker: the import command runs it without one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from worker import logs
from worker.errors import FeedError, Held, LeaseLost, NotModified
from worker.lease import Lease
from worker.model import PullJob, RunReport, StoredReject, Turns
from worker.pipeline import pull
from worker.pipeline.rejects import RejectSink
from worker.pipeline.stream import Progress
from worker.retry import Failure, RetryPolicy, classify, retrying
from worker.retry import describe as describe_error
from worker.settings import Settings
from worker.store import runs
from worker.urls import scrub

log = logs.get(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | skipped | held | dry-run
    report: RunReport
    error: str | None = None  # the reason, when failed, skipped or held


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
    if job.turns is not None:  # a large run's pauses for small runs: not its own time
        job = dataclasses.replace(job, turns=_Extending(job.turns, limit))
    try:
        if job.feed.mapping.error is not None:  # the feed's mapping: nothing to download
            return await _fail(pool, settings, job, report, rejects, started,
                               job.feed.mapping.error)
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


class _Extending:
    """A large run's turns whose pauses move its run deadline on by as long. Its parser
    and its COPY each pause for their own turns, and may at once: the time counted (what
    `pause` returns, summed) is the time either was paused, once."""

    def __init__(self, turns: Turns, limit: asyncio.Timeout) -> None:
        self.turns, self.limit = turns, limit
        self._pausing = 0  # pauses under way
        self._since = 0.0  # ... since then
        self._paused = False  # ... of which one did pause

    @property
    def waiting(self) -> bool:
        return self.turns.waiting

    async def pause(self, worked_s: float) -> float:
        loop = asyncio.get_running_loop()
        if not self._pausing:
            self._since, self._paused = loop.time(), False
        self._pausing += 1
        try:
            if await self.turns.pause(worked_s):
                self._paused = True
        finally:
            self._pausing -= 1
        if self._pausing or not self._paused:
            return 0.0
        paused = loop.time() - self._since
        when = self.limit.when()
        if when is not None and not self.limit.expired():
            self.limit.reschedule(when + paused)
        return paused


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
    report.rejected = rejects.count
    if not job.dry_run:
        await retrying(RetryPolicy.from_settings(settings),
                       lambda: record_failure(pool, job.run_id, job.owner, report,
                                              rejects.kept, error),
                       what="recording a failed run")
    log.warning("run.failed", run_id=job.run_id, feed_id=job.feed.id, error=error)
    return Outcome("failed", report, error)


async def _attempt(pool: asyncpg.Pool, settings: Settings, job: PullJob, report: RunReport,
                   rejects: RejectSink, progress: Progress | None, lease: Lease,
                   heartbeat: asyncio.Task[None], started: float) -> Outcome:
    """One try at the whole pull (download, parse, COPY, merge) in one transaction.
    Raises _Retry for a transient failure."""
    work = asyncio.create_task(pull.apply(pool, settings, job, report, rejects, progress, lease),
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
    except pull.DryRun:
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


async def record_failure(pool: asyncpg.Pool, run_id: int, owner: str | None,
                         report: RunReport, rejects: list[StoredReject], error: str) -> None:
    """A run ends failed with its reason and the rejects kept so far (owner None: whoever
    holds it; a run that another replica took over is left alone)."""
    async with pool.acquire() as conn, conn.transaction():
        if await runs.fail_run(conn, run_id, owner, report, error):
            await runs.store_rejects(conn, run_id, rejects)
