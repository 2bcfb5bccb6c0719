"""Runs pulls on this replica: at most N at once, claimed from pull-request messages or
taken over from replicas that stopped renewing their lease; drained on shutdown.

The runner owns a run's envelope (`execute`): the lease, retries of transient failures,
the run's deadline, and recording how the run ended (succeeded, failed, held, skipped).
The stages inside it are pipeline/pull.py's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from worker import logs, metrics
from worker.broker import Decision
from worker.claims import claim_pull
from worker.errors import FeedError, Held, LeaseLost, NotModified
from worker.lease import Lease
from worker.messages import decode_pull, encode_run_completed
from worker.model import PullJob, RunReport, StoredReject
from worker.pipeline import pull
from worker.pipeline.rejects import RejectSink
from worker.pipeline.stream import Progress
from worker.retry import Failure, RetryPolicy, classify, retrying
from worker.retry import describe as describe_error
from worker.settings import Settings
from worker.store import runs
from worker.urls import scrub

log = logs.get(__name__)


Announce = Callable[[bytes], Awaitable[None]]


class PullRunner:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 announce: Announce | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.announce = announce  # publishes feed.run-completed
        self.slots = asyncio.Semaphore(settings.pull_concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepting = True

    async def handle_message(self, message: AbstractIncomingMessage) -> Decision:
        """A pull-request: claim a run durably, then ack; the run goes on in a task."""
        request = decode_pull(message.body)
        await self.slots.acquire()
        started = False
        try:
            if not self.accepting:
                return Decision.REQUEUE
            claim = await claim_pull(self.pool, request.feed_id, message.message_id,
                                     self.settings.worker_id, self.settings.lease_s,
                                     force=request.force)
            if claim.run_id is None:
                log.info("pull.skipped", feed_id=request.feed_id,
                         message_id=message.message_id, reason=claim.skipped)
                return Decision.ACK
            try:
                url = pull.feed_url(claim.feed)
            except FeedError as exc:
                await self._fail_unstarted(claim.run_id, str(exc))
                return Decision.ACK
            job = PullJob(claim.run_id, claim.feed, url, self.settings.worker_id,
                               force=request.force)
            self._start(job, message.message_id)
            started = True
            return Decision.ACK
        finally:
            if not started:
                self.slots.release()

    async def take_over_expired(self) -> int:
        """Claim runs whose lease expired (their replica died or shut down); how many."""
        taken = 0
        while self.accepting and not self.slots.locked():
            row = await runs.take_over(self.pool, self.settings.worker_id, self.settings.lease_s)
            if row is None:
                break
            run_id, feed_id = row["id"], row["inventory_feed_id"]
            if row["attempts"] > self.settings.max_run_attempts:
                await self._fail_unstarted(
                    run_id, f"abandoned: its replica stopped {row['attempts'] - 1} times")
                continue
            feed = await runs.load_feed(self.pool, feed_id)
            if feed is None or not feed.enabled:
                await self._fail_unstarted(run_id, f"feed {feed_id} is gone or disabled")
                continue
            try:
                url = pull.feed_url(feed)
            except FeedError as exc:
                await self._fail_unstarted(run_id, str(exc))
                continue
            await self.slots.acquire()
            log.info("run.taken_over", run_id=run_id, feed_id=feed_id, attempt=row["attempts"])
            self._start(PullJob(run_id, feed, url, self.settings.worker_id,
                                     force=row["force"]), row["message_id"])
            taken += 1
        return taken

    async def reaper(self) -> None:
        """Side task: look for expired leases every third of a lease."""
        while True:
            await self.take_over_expired()
            await asyncio.sleep(self.settings.lease_s / 3)

    async def drain(self, grace_s: float) -> None:
        """Stop taking work; let runs finish within the grace period, then hand them back."""
        self.accepting = False
        if self.tasks:
            log.info("runner.draining", runs=len(self.tasks), grace_s=grace_s)
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _start(self, job: PullJob, message_id: str | None) -> None:
        task = asyncio.create_task(self._run(job, message_id), name=f"run-{job.run_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, job: PullJob, message_id: str | None) -> None:
        bound = log.bind(run_id=job.run_id, feed_id=job.feed.id, message_id=message_id)
        bound.info("run.started", **pull.describe(job))
        try:
            outcome = await execute(self.pool, self.settings, job)
            metrics.RUNS.labels("pull", outcome.status).inc()
            r = outcome.report
            bound.info("run.completed", status=outcome.status, rows_read=r.rows_read,
                       inserted=r.inserted, updated=r.updated, unchanged=r.unchanged,
                       rejected=r.rejected, duplicates=r.duplicates, zeroed=r.zeroed,
                       connected=r.connected, ambiguous=r.ambiguous, skipped=r.skipped,
                       bytes=r.bytes,
                       timings=r.timings, error=outcome.error)
            await self._announce(job.run_id)
        except LeaseLost as exc:
            bound.warning("run.lease_lost", error=str(exc))
        except asyncio.CancelledError:
            # Shutdown past the grace period: hand the run to whichever replica is next.
            await asyncio.shield(runs.release_lease(self.pool, job.run_id, job.owner))
            bound.warning("run.handed_back")
            raise
        except Exception as exc:
            bound.error("run.interrupted", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.slots.release()

    async def _announce(self, run_id: int) -> None:
        """The run's figures as a feed.run-completed event; a broker hiccup is logged, not
        fatal (the run is recorded in feed_runs either way)."""
        if self.announce is None:
            return
        try:
            await self.announce(encode_run_completed(await runs.get_run(self.pool, run_id)))
        except Exception as exc:
            log.warning("run.announce_failed", run_id=run_id, error=f"{type(exc).__name__}")

    async def _fail_unstarted(self, run_id: int, error: str) -> None:
        await record_failure(self.pool, run_id, None, RunReport(), [], error)
        metrics.RUNS.labels("pull", "failed").inc()
        log.warning("run.failed", run_id=run_id, error=error)
        await self._announce(run_id)


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
