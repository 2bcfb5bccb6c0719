"""Runs pulls on this replica: at most N at once, claimed from pull-request messages or
taken over from replicas that stopped renewing their lease; drained on shutdown.

Each run goes through its envelope (envelope.py: lease, retries, deadline, how it ended)
around the stages of pipeline/pull.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from worker import logs, metrics
from worker.broker import Decision
from worker.claims import claim_pull
from worker.envelope import execute, record_failure
from worker.errors import FeedError, LeaseLost
from worker.messages import decode_pull, encode_run_completed
from worker.model import PullJob, RunReport
from worker.notify.notifier import Notifier
from worker.pipeline import pull
from worker.settings import Settings
from worker.store import runs

log = logs.get(__name__)


Announce = Callable[[bytes], Awaitable[None]]

# A large run pauses at most this long at a time (the feed's server keeps its connection).
MAX_PAUSE_S = 1.0
# ... and goes on once no small run was in flight for this long.
IDLE_S = 0.02


class SmallFirst:
    """Small runs first: while any is in flight, a large run pauses between pieces of its
    file (PullJob.turns), so that its parsing and its COPY take at most `share` of the time
    and the small runs have the event loop and the database for the rest. It goes on once
    no small run was in flight for IDLE_S (the next one is claimed a moment after the last
    ended)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def small(self) -> Iterator[None]:
        """A small run in flight."""
        self.running += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.running -= 1
            if not self.running:
                self._idle.set()

    @property
    def waiting(self) -> bool:
        return bool(self.running) and self.share < 1

    async def pause(self, worked_s: float) -> float:
        """A large run's pause after `worked_s` seconds of work: until no small run is in
        flight, for at most what keeps its share. The seconds it paused."""
        if not self.waiting:
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(MAX_PAUSE_S,
                                           worked_s * (1 - self.share) / self.share)):
                while True:
                    await self._idle.wait()
                    # the next small run is claimed a few milliseconds after the last
                    # ended: the pause ends when none has come within IDLE_S
                    await asyncio.sleep(IDLE_S)
                    if not self.running:
                        break
        return loop.time() - start


class PullRunner:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 announce: Announce | None = None, notifier: Notifier | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.announce = announce  # publishes feed.run-completed
        self.notifier = notifier  # tells a person (worker/notify), after the run is recorded
        # Two lanes: every pull takes a slot to be claimed; one of a feed that read
        # FEED_WORKER_PULL_LARGE_ROWS or more last time moves to a large slot to run, so
        # that big files never hold up the small feeds (and at most as many run at once).
        self.slots = asyncio.Semaphore(settings.pull_concurrency)
        self.large = asyncio.Semaphore(settings.pull_concurrency)
        self.small_first = SmallFirst(settings.pull_large_share)
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
                               force=request.force, last_known=True, last_pull=claim.last)
            large = (claim.last.rows_read if claim.last else 0) >= self.settings.pull_large_rows
            self._start(job, message.message_id, large)
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

    def _start(self, job: PullJob, message_id: str | None, large: bool = False) -> None:
        """Run the job in a task; it holds a slot, which it gives up for a large one first
        (`large`; waiting for one while all are taken)."""
        task = asyncio.create_task(self._run(job, message_id, large), name=f"run-{job.run_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, job: PullJob, message_id: str | None, large: bool) -> None:
        bound = log.bind(run_id=job.run_id, feed_id=job.feed.id, message_id=message_id)
        lane, holding = self.slots, True  # free once the run is recorded (the event goes on)
        try:
            if large:
                await self.large.acquire()
                self.slots.release()
                lane = self.large
                job = dataclasses.replace(job, turns=self.small_first)
            bound.info("run.started", large=large, **pull.describe(job))
            started = time.perf_counter()
            with contextlib.nullcontext() if large else self.small_first.small():
                outcome = await execute(self.pool, self.settings, job)
            holding = False
            lane.release()
            metrics.RUNS.labels("pull", outcome.status).inc()
            metrics.RUN_SECONDS.labels("pull").observe(time.perf_counter() - started)
            r = outcome.report
            metrics.ROWS.labels("pulled").inc(r.rows_read)
            metrics.ROWS.labels("rejected").inc(r.rejected)
            bound.info("run.completed", status=outcome.status, rows_read=r.rows_read,
                       inserted=r.inserted, updated=r.updated, unchanged=r.unchanged,
                       rejected=r.rejected, duplicates=r.duplicates, zeroed=r.zeroed,
                       connected=r.connected, ambiguous=r.ambiguous, skipped=r.skipped,
                       bytes=r.bytes,
                       timings=r.timings, error=outcome.error)
            await self._announce(job.run_id)
            await self._notify(job.run_id, outcome.status, r.rows_read, r.rejected)
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
            if holding:
                lane.release()

    async def _announce(self, run_id: int) -> None:
        """The run's figures as a feed.run-completed event; a broker hiccup is logged, not
        fatal (the run is recorded in feed_runs either way)."""
        if self.announce is None:
            return
        try:
            await self.announce(encode_run_completed(await runs.get_run(self.pool, run_id)))
        except Exception as exc:
            log.warning("run.announce_failed", run_id=run_id, error=f"{type(exc).__name__}")

    async def _notify(self, run_id: int, status: str, rows_read: int, rejected: int) -> None:
        if self.notifier is None:
            return
        try:
            await self.notifier.after_run(run_id, status, rows_read, rejected)
        except Exception as exc:  # never the run's failure: it is recorded already
            log.warning("notify.failed", run_id=run_id, error=f"{type(exc).__name__}")

    async def _fail_unstarted(self, run_id: int, error: str) -> None:
        await record_failure(self.pool, run_id, None, RunReport(), [], error)
        metrics.RUNS.labels("pull", "failed").inc()
        log.warning("run.failed", run_id=run_id, error=error)
        await self._announce(run_id)
        await self._notify(run_id, "failed", 0, 0)
