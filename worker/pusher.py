"""Consumes feed-update messages in micro-batches: collect for a few milliseconds or a few
thousand variants, apply the group in one transaction, then settle every message."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg

from worker import broker, logs, metrics
from worker import constants as C
from worker.errors import DEAD_INVALID
from worker.pipeline.push import Envelope, Fate, Group, Prepared, order_time, wait_turn
from worker.pipeline.pushretry import Applier, Consumption, record_dead_replays
from worker.settings import Settings
from worker.store import push as store

log = logs.get(__name__)


class PushConsumer:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 topology: broker.Topology, consumption: Consumption | None = None) -> None:
        self.pool = pool
        self.applier = Applier(pool, settings, consumption)
        self.settings = settings
        self.topology = topology
        self.inbox: asyncio.Queue[broker.Delivery] = asyncio.Queue()
        self.accepting = True
        self.idle = asyncio.Event()
        self.idle.set()
        self._last: asyncio.Task[Any] | None = None  # the latest group's commit
        self._committing: set[asyncio.Task[None]] = set()

    async def on_message(self, message: broker.Delivery) -> None:
        self.inbox.put_nowait(message)

    async def run(self) -> None:
        """Side task: groups in a pipeline. While one group's transaction runs, the next
        group is staged (its COPY) and the one after it collected, decoding and folding
        each message as it comes; transactions merge one at a time, in order, so a later
        update always lands after an earlier one."""
        committing: asyncio.Task[None] | None = None
        applied: asyncio.Future[None] | None = None  # the last group's transaction is over
        before: asyncio.Future[None] | None = None   # ... and the one's before it
        try:
            while self.accepting:
                messages, group = await self._collect(applied)
                self.idle.clear()
                prepared = group.close()
                await wait_turn(before)  # two groups in the database at most
                if not self.accepting:  # draining: this group goes back to the queue
                    await broker.requeue_all(messages)
                    if committing is None or committing.done():
                        self.idle.set()
                    break
                before, applied = applied, asyncio.get_running_loop().create_future()
                committing = asyncio.create_task(
                    self._commit(list(zip(messages, group.envelopes, strict=True)), prepared,
                                 applied, before, committing),
                    name="push-commit")
                self._last = committing
                self._committing.add(committing)
                committing.add_done_callback(self._committing.discard)
                committing.add_done_callback(self._settled)
        finally:
            if committing is not None:
                await committing

    def _settled(self, task: asyncio.Task[None]) -> None:
        if self._last is None or task is self._last:
            self.idle.set()

    async def _collect(self, committing: asyncio.Future[None] | None
                       ) -> tuple[list[broker.Delivery], Group]:
        """The next group. It closes at FEED_WORKER_PUSH_BATCH_VARIANTS; or, once the previous
        group's transaction is over (until then nothing could start anyway: collecting on
        makes fewer, larger transactions), as soon as no message comes: a lone message is
        applied at once, and under light load each group takes what arrived while the one
        before it was in the database. A stream that keeps coming (a backlog) is taken on
        until FEED_WORKER_PUSH_BATCH_WAIT_S after the group's first message: larger groups,
        less work per message, when the daemon is the limit.
        (The daemon runs with automatic garbage collection off: see gcpause.)"""
        first = await self.inbox.get()
        messages = [first]
        group = Group(self.settings)
        skew = self.settings.max_future_skew_s
        group.add(_envelope(first, skew))
        deadline = time.monotonic() + self.settings.push_batch_wait_s
        limit = self.settings.push_batch_variants
        looked = time.perf_counter()
        while group.variants < limit:
            try:
                message = self.inbox.get_nowait()
            except asyncio.QueueEmpty:
                waited = await self._next(committing, deadline)
                if waited is None:
                    break
                message = waited
                looked = time.perf_counter()
            else:
                if time.perf_counter() - looked > _LOOK_EVERY_S:
                    await asyncio.sleep(0)  # let the transaction in flight move on
                    looked = time.perf_counter()
            messages.append(message)
            group.add(_envelope(message, skew))
        return messages, group

    async def _next(self, committing: asyncio.Future[None] | None,
                    deadline: float) -> broker.Delivery | None:
        """The next message, or None when the group should close without it."""
        if committing is not None and not committing.done():
            getting = asyncio.ensure_future(self.inbox.get())
            waiting: set[asyncio.Future[Any]] = {getting, committing}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if getting.done():
                return getting.result()
            getting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getting
            if not getting.cancelled():
                return getting.result()
            # The transaction is over: the group takes on a stream that keeps coming until
            # its deadline; a pause closes it at once.
        if time.monotonic() >= deadline:
            return None
        return await self._arrived()

    async def _arrived(self) -> broker.Delivery | None:
        """A message the client has already received but not handed over yet (each goes
        through a few tasks: frames, channel, consumer), or None: the stream paused. No
        clock is waited for: a lone message is applied at once, a burst is folded."""
        for _ in range(_HANDOVER_LOOPS):
            await asyncio.sleep(0)
            if not self.inbox.empty():
                return self.inbox.get_nowait()
        return None

    async def _commit(self, group: list[tuple[broker.Delivery, Envelope]],
                      prepared: Prepared, applied: asyncio.Future[None],
                      after: asyncio.Future[None] | None,
                      previous: asyncio.Task[None] | None) -> None:
        """Apply the group once the previous group's transaction is over (`after`; its
        COPY goes first); once its own has committed (`applied`) the next group may merge,
        and its messages are settled after the previous group's (acks use `multiple`)."""
        started = time.perf_counter()
        try:
            done = await self.applier.apply(prepared, after, applied)
        except asyncio.CancelledError:  # shutdown past its grace: all go back
            _signal(applied)
            await broker.requeue_all([m for m, _ in group])
            raise
        _signal(applied)
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        decisions = [(m, _note(e)) for m, e in group]
        try:
            await broker.settle_group(self.topology, decisions, C.QUEUE_UPDATE)
        except Exception as exc:
            log.warning("push.settle_failed", messages=len(group),
                        error=f"{type(exc).__name__}: {exc}")
        await record_dead_replays(self.pool, [e for _, e in group])
        for fate, n in Counter(e.fate.value for _, e in group).items():
            metrics.MESSAGES.labels(C.QUEUE_UPDATE, fate).inc(n)
        for kind, n in Counter(e.dead_kind or DEAD_INVALID for _, e in group
                               if e.fate is Fate.DEAD).items():
            metrics.DEAD_LETTERS.labels(C.QUEUE_UPDATE, kind).inc(n)
        metrics.ROWS.labels("pushed").inc(done.items)
        metrics.PUSH_GROUP_SECONDS.observe(time.perf_counter() - started)
        log.debug("push.group_applied", messages=len(group), items=done.items,
                  inserted=done.total("inserted"), updated=done.total("updated"),
                  rejected=done.total("rejected"), transactions=done.transactions,
                  seconds=round(time.perf_counter() - started, 4))

    async def drain(self, grace_s: float) -> None:
        """Stop taking groups; let the one in flight finish; hand back what is waiting."""
        self.accepting = False
        try:
            await asyncio.wait_for(self.idle.wait(), grace_s)
        except TimeoutError:
            # A group still retrying (the database is away) goes back to the queue whole.
            log.warning("push.drain_timeout", grace_s=grace_s)
            for task in list(self._committing):
                task.cancel()
            await asyncio.gather(*self._committing, return_exceptions=True)
        waiting = []
        while not self.inbox.empty():
            waiting.append(self.inbox.get_nowait())
        await broker.requeue_all(waiting)

    async def forget_old_messages(self) -> None:
        """Side task: drop remembered message ids past their retention, a slice at a time."""
        slice_rows = 10_000
        while True:
            deleted = await store.forget_old(self.pool, self.settings.message_retention_s,
                                             slice_rows)
            if deleted < slice_rows:
                await asyncio.sleep(min(3600.0, self.settings.message_retention_s / 10))


def _signal(applied: asyncio.Future[None]) -> None:
    """This group's transaction is over (once; a cancelled waiter may have ended it)."""
    if not applied.done():
        applied.set_result(None)


def _note(e: Envelope) -> broker.DeadLetterNote | None:
    if e.fate is not Fate.DEAD:
        return None
    return broker.DeadLetterNote(e.reason, e.error_class, e.order_at)


def _envelope(message: broker.Delivery, max_skew_s: float) -> Envelope:
    headers = message.headers or {}
    # Replays and the API's messages have their outcome recorded (replay_outcomes).
    replay = headers.get(C.HEADER_REPLAY_ID) or headers.get(C.HEADER_STATUS_ID)
    if isinstance(replay, bytes):
        replay = replay.decode(errors="replace")
    return Envelope(message.body, message.message_id,
                    order_time(headers, datetime.now(UTC), max_skew_s),
                    replay if isinstance(replay, str) and replay else None)


_HANDOVER_LOOPS = 4  # turns of the event loop from a delivery's frames to on_message
_LOOK_EVERY_S = 0.0005  # folding between two looks at the event loop (the transaction in
# flight makes a dozen round trips: each waits for the loop)
