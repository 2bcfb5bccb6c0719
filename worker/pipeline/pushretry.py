"""A push group applied whatever it meets: transient failures are retried in place, in
order; a failure that is not transient is narrowed down to the message that causes it.

- UNAVAILABLE (the database is not there): the group is tried again with backoff, its
  messages held unacked and every later group held behind it, so that order is kept.
  After `retry_attempts` tries, consumption pauses (the broker stops sending; nothing is
  requeued, so no delivery count is spent) and the group is tried every `retry_cap_s`
  until the database answers; then consumption resumes.
- CONTENTION (deadlock, serialization failure, lock timeout): tried again, up to
  `retry_attempts` times; then handled as permanent.
- PERMANENT: the group is split in halves, in order, each applied on its own, down to
  single messages; only a message that fails alone is dead-lettered, with its cause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from worker import logs, metrics
from worker.errors import DEAD_REFUSED
from worker.pipeline.push import Envelope, Fate, GroupReport, Prepared, commit, prepare, wait_turn
from worker.retry import Failure, RetryPolicy, classify, describe
from worker.settings import Settings
from worker.store import push as store
from worker.urls import scrub

log = logs.get(__name__)

Hook = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


@dataclass
class Consumption:
    """How the applier pauses and resumes the broker's deliveries (the daemon's consumer)."""

    pause: Hook = _nothing
    resume: Hook = _nothing


@dataclass
class Applied:
    reports: list[GroupReport] = field(default_factory=list)
    transactions: int = 0

    @property
    def items(self) -> int:
        return sum(r.items for r in self.reports)

    def total(self, name: str) -> int:
        return sum(r.total(name) for r in self.reports)


class Applier:
    """`policy` (default: the settings'); `hold` False (a caller that is waiting, the HTTP
    API): a database still unavailable after the policy's attempts is raised, not waited
    out; `outcomes`: the reports carry each item's outcome and stored row."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 consumption: Consumption | None = None, *,
                 policy: RetryPolicy | None = None, hold: bool = True,
                 outcomes: bool = False) -> None:
        self.pool = pool
        self.settings = settings
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.consumption = consumption or Consumption()
        self.paused = False
        self.hold, self.outcomes = hold, outcomes

    async def apply(self, prepared: Prepared,
                    after: asyncio.Future[None] | None = None,
                    committed: asyncio.Future[None] | None = None) -> Applied:
        """Apply the group; every envelope's fate is decided when this returns (DEAD ones
        carry their reason). `committed` is set as soon as its transaction has committed.
        Raises only CancelledError."""
        done = Applied()
        await self._apply(prepared, after, done, committed)
        return done

    async def _apply(self, prepared: Prepared, after: asyncio.Future[None] | None,
                     done: Applied, committed: asyncio.Future[None] | None = None) -> None:
        failure = await self._try(prepared, after, done, committed)
        if failure is None:
            return
        live = [e for e in prepared.envelopes if e.fate is Fate.APPLIED]
        if len(live) <= 1:
            for e in live:
                e.fate, e.reason = Fate.DEAD, self._reason(failure)
                e.error_class = type(failure).__name__
                e.dead_kind = DEAD_REFUSED
                log.warning("push.message_failed_alone", message_id=e.message_id,
                            error=e.reason)
            return
        envelopes = list(prepared.envelopes)
        middle = envelopes.index(live[len(live) // 2])
        log.info("push.group_split", messages=len(envelopes), live=len(live),
                 error=self._reason(failure))
        metrics.PUSH_SPLITS.inc()
        for half in (envelopes[:middle], envelopes[middle:]):
            await self._apply(await prepare(self.settings, half), None, done)

    async def _try(self, prepared: Prepared, after: asyncio.Future[None] | None,
                   done: Applied, committed: asyncio.Future[None] | None = None
                   ) -> BaseException | None:
        """Commit with retries; the permanent failure that stopped it, or None."""
        attempt = 0
        while True:
            try:
                done.transactions += 1
                done.reports.append(await commit(self.pool, self.settings, prepared, after,
                                                 self.outcomes, committed))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await wait_turn(after)  # tries again only once the previous group is over
                after = None
                _reset(prepared.envelopes)
                kind = classify(exc)
                metrics.PUSH_FAILURES.labels(kind.value).inc()
                attempt += 1
                if kind is Failure.PERMANENT or (
                        kind is Failure.CONTENTION and attempt >= self.policy.attempts):
                    return exc
                log.warning("push.group_retry", attempt=attempt, kind=kind.value,
                            messages=len(prepared.envelopes), error=self._reason(exc))
                if kind is Failure.UNAVAILABLE and attempt >= self.policy.attempts:
                    if not self.hold:
                        raise exc
                    await self._pause()
                    await asyncio.sleep(self.policy.cap_s)
                else:
                    await self.policy.sleep(attempt)
                continue
            await self._resume()
            return None

    async def _pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        metrics.PUSH_PAUSED.set(1)
        log.warning("push.paused", retry_every_s=self.policy.cap_s)
        try:
            await self.consumption.pause()
        except Exception as exc:
            log.warning("push.pause_failed", error=describe(exc))

    async def _resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        metrics.PUSH_PAUSED.set(0)
        log.info("push.resumed")
        try:
            await self.consumption.resume()
        except Exception as exc:
            log.warning("push.resume_failed", error=describe(exc))

    def _reason(self, exc: BaseException) -> str:
        return scrub(describe(exc), self.settings.database_url, self.settings.amqp_url)[:1000]


def _reset(envelopes: Sequence[Envelope]) -> None:
    for e in envelopes:
        e.reset()


async def record_dead_replays(pool: asyncpg.Pool, envelopes: Sequence[Envelope]) -> None:
    """Replayed messages dead-lettered again: their outcome, for `replay requeue` (best
    effort: the dead-letter copy carries the reason either way)."""
    rows = [(e.replay_id, e.message_id or "", e.reason) for e in envelopes
            if e.replay_id and e.fate is Fate.DEAD]
    if not rows:
        return
    try:
        await store.record_dead_replays(pool, rows)
    except Exception as exc:
        log.info("push.replay_outcome_not_recorded", error=describe(exc))
