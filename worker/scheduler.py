"""Feed schedules: one replica at a time publishes pull-requests for the feeds that are due.

The leader is whoever holds a session-level Postgres advisory lock on a connection of its
own (not a pool's). Each tick a replica that does not lead tries to take the lock; the
leader's session ending (the replica died, its connection broke) frees it, so another
replica leads within a tick. The leader queues due feeds in batches, each in one
transaction: mark them queued, publish their pull-requests with confirms, commit. A publish
that fails rolls the batch back and its feeds stay due for the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
from aio_pika.abc import AbstractExchange

from worker import broker, logs, metrics
from worker import constants as C
from worker.errors import TransientError
from worker.messages import encode_pull
from worker.settings import Settings
from worker.store import db, schedule
from worker.store.schedule import Due

log = logs.get(__name__)

BATCH = 500              # feeds marked and published per transaction
TICK_DEADLINE_S = 60.0   # a tick stuck longer (a silent network) gives up the lead
CLOSE_TIMEOUT_S = 5.0

# What a broken or stuck leader connection raises.
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Scheduler:
    """Leads or waits to lead; `run` is the daemon's side task, `stop` ends it cleanly."""

    def __init__(self, settings: Settings, exchange: AbstractExchange,
                 check_stale: Callable[[], Awaitable[int]] | None = None) -> None:
        self.settings = settings
        self.exchange = exchange  # on a channel with publisher confirms
        self.check_stale = check_stale  # feeds gone stale, notified (worker/notify)
        self.leading = False
        self.terms = 0            # how many times this replica took the lead
        self._conn: asyncpg.Connection | None = None
        self._stopping = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()

    async def run(self) -> None:
        self._running = True
        self._done.clear()
        try:
            while not self._stopping.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.schedule_tick_s)
        finally:
            await self._close()
            self._running = False
            self._done.set()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop ticking and give the lead up; safe to call twice, or when never run."""
        self._stopping.set()
        if not self._running:
            await self._close()  # stepped by hand (tests), or never started
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout_s)

    async def step(self) -> int:
        """One tick: take the lead if it is free; when leading, queue what is due. Returns
        how many pull-requests were published."""
        if not self.leading:
            await self._try_lead()
        if not self.leading:
            return 0
        queued = 0
        try:
            async with asyncio.timeout(TICK_DEADLINE_S):
                queued = await self._queue_due()
        except TransientError as exc:
            log.warning("scheduler.publish_failed", error=str(exc))
        except _DB_ERRORS as exc:
            self._lose_lead(exc)
        if self.leading and self.check_stale is not None:
            try:
                async with asyncio.timeout(TICK_DEADLINE_S):
                    await self.check_stale()
            except Exception as exc:  # tried again next tick
                log.warning("scheduler.stale_check_failed", error=f"{type(exc).__name__}: {exc}")
        return queued

    async def _try_lead(self) -> None:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await db.connect(self.settings.database_url)
                await schedule.name_session(self._conn,
                                            f"feed-worker scheduler {self.settings.worker_id}")
            got = await asyncio.wait_for(schedule.try_lead(self._conn), TICK_DEADLINE_S)
        except (TransientError, *_DB_ERRORS) as exc:
            log.warning("scheduler.no_database", error=f"{type(exc).__name__}: {exc}")
            self._drop_connection()
            return
        if got:
            self.leading = True
            self.terms += 1
            metrics.SCHEDULER_LEADING.set(1)
            log.info("scheduler.leading", worker_id=self.settings.worker_id,
                     tick_s=self.settings.schedule_tick_s)

    async def _queue_due(self) -> int:
        conn = self._conn
        if conn is None:  # not leading
            return 0
        queued = 0
        while True:
            async with conn.transaction():
                due = await schedule.claim_due(conn, BATCH)
                await self._publish(due)
            queued += len(due)
            metrics.SCHEDULED.inc(len(due))
            if due:
                log.info("scheduler.queued", count=len(due),
                         feed_ids=[d.feed_id for d in due[:20]])
            if len(due) < BATCH or self._stopping.is_set():
                log.debug("scheduler.ticked", queued=queued)
                return queued

    async def _publish(self, due: list[Due]) -> None:
        """Every pull-request confirmed, or TransientError (the caller rolls back)."""
        results = await asyncio.gather(
            *(broker.publish_routed(
                self.exchange,
                broker.json_message(encode_pull(d.feed_id, False), d.message_id),
                C.ROUTING_PULL)
              for d in due),
            return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in failed:
            if not isinstance(r, Exception):
                raise r  # cancelled: stop at once
        if failed:
            raise TransientError(f"{len(failed)} of {len(due)} pull-request(s) not confirmed, "
                                 f"the feeds stay due: {failed[0]}")

    def _lose_lead(self, exc: BaseException) -> None:
        log.warning("scheduler.lost_lead", worker_id=self.settings.worker_id,
                    error=f"{type(exc).__name__}: {exc}")
        self._drop_connection()

    def _drop_connection(self) -> None:
        """Abandon the session: Postgres frees its lock when the connection goes."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
        self._not_leading()

    def _not_leading(self) -> None:
        self.leading = False
        metrics.SCHEDULER_LEADING.set(0)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        leading = self.leading
        self._not_leading()
        try:
            if leading:
                # Unlocked before the goodbye: another replica may lead at its next tick,
                # without waiting for this session's backend to exit.
                await asyncio.wait_for(schedule.unlock(conn), CLOSE_TIMEOUT_S)
                log.info("scheduler.stepped_down", worker_id=self.settings.worker_id)
            await conn.close(timeout=CLOSE_TIMEOUT_S)
        except Exception:
            conn.terminate()  # broken already: nothing to say goodbye to
        except BaseException:
            conn.terminate()
            raise
