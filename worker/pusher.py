"""Consumes feed-update messages in micro-batches: collect for a few milliseconds or a few
thousand variants, apply the group in one transaction, then settle every message."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from worker import broker, logs, metrics
from worker import constants as C
from worker.pipeline.push import Envelope, Fate, Prepared, commit, prepare
from worker.settings import Settings
from worker.store import push as store

log = logs.get(__name__)


class PushConsumer:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 topology: broker.Topology) -> None:
        self.pool = pool
        self.settings = settings
        self.topology = topology
        self.inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.accepting = True
        self.idle = asyncio.Event()
        self.idle.set()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.inbox.put_nowait(message)

    async def run(self) -> None:
        """Side task: groups in a two-stage pipeline. While one group's transaction runs,
        the next is collected, decoded and folded; transactions still run one at a time,
        in order, so a later update always lands after an earlier one."""
        committing: asyncio.Task[None] | None = None
        try:
            while self.accepting:
                group = await self._collect()
                self.idle.clear()
                prepared = await prepare(self.settings, [e for _, e in group])
                if committing is not None:
                    await committing
                if not self.accepting:  # draining: this group goes back to the queue
                    await broker.requeue_all([m for m, _ in group])
                    self.idle.set()
                    break
                committing = asyncio.create_task(self._commit(group, prepared),
                                                 name="push-commit")
                committing.add_done_callback(lambda _: self.idle.set())
        finally:
            if committing is not None:
                await committing

    async def _collect(self) -> list[tuple[AbstractIncomingMessage, Envelope]]:
        first = await self.inbox.get()
        group = [self._envelope(first)]
        variants = _size(group[-1][1])
        deadline = time.monotonic() + self.settings.push_batch_wait_s
        while variants < self.settings.push_batch_variants:
            try:
                message = self.inbox.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    message = await asyncio.wait_for(self.inbox.get(), left)
                except TimeoutError:
                    break
            group.append(self._envelope(message))
            variants += _size(group[-1][1])
        return group

    @staticmethod
    def _envelope(message: AbstractIncomingMessage) -> tuple[AbstractIncomingMessage, Envelope]:
        e = Envelope(message.body, message.message_id, message.timestamp)
        e.decode()
        return message, e

    async def _commit(self, group: list[tuple[AbstractIncomingMessage, Envelope]],
                      prepared: Prepared) -> None:
        started = time.perf_counter()
        try:
            report = await commit(self.pool, self.settings, prepared)
        except asyncio.CancelledError:
            await broker.requeue_all([m for m, _ in group])
            raise
        except Exception as exc:  # nothing was applied: all go back
            log.warning("push.group_failed", messages=len(group),
                        error=f"{type(exc).__name__}: {exc}")
            await broker.requeue_all([m for m, _ in group])
            return
        decisions = [(m, e.reason if e.fate is Fate.DEAD else "") for m, e in group]
        try:
            await broker.settle_group(self.topology, decisions, C.QUEUE_UPDATE)
        except Exception as exc:
            log.warning("push.settle_failed", messages=len(group),
                        error=f"{type(exc).__name__}: {exc}")
        for _, e in group:
            metrics.MESSAGES.labels(C.QUEUE_UPDATE, e.fate.value).inc()
        metrics.ROWS.labels("pushed").inc(report.items)
        log.debug("push.group_applied", messages=len(group), items=report.items,
                  inserted=report.total("inserted"), updated=report.total("updated"),
                  rejected=report.total("rejected"),
                  seconds=round(time.perf_counter() - started, 4))

    async def drain(self, grace_s: float) -> None:
        """Stop taking groups; let the one in flight finish; hand back what is waiting."""
        self.accepting = False
        try:
            await asyncio.wait_for(self.idle.wait(), grace_s)
        except TimeoutError:
            log.warning("push.drain_timeout", grace_s=grace_s)
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


def _size(e: Envelope) -> int:
    return len(e.update.variants) if e.update is not None else 1
