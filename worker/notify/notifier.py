"""A replica's notifications: decided when a pull ends (or, on the leading scheduler, when a
feed goes stale), sent from a background task so that a slow or absent receiver never slows
or fails a run.

A pull's end is handed over after its run is recorded (committed): `after_run` disables a
feed that failed too often in a row (one statement) and queues the notification without
waiting (a bounded queue: past FEED_WORKER_NOTIFY_QUEUE one is dropped, logged and
counted). The sender claims each notification by its key in `notifications` before it
POSTs: a run's ('run-<id>') or a stale episode's ('stale-<feed>-<last success>'), so a
retried run or another replica never sends the same one twice (at most once: a replica that
dies while it sends loses that one)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from yarl import URL

from worker import __version__, logs, metrics
from worker.notify import message
from worker.notify.send import Delivery, post
from worker.retry import RetryPolicy
from worker.settings import Settings
from worker.sources.guard import GuardedResolver, Policy
from worker.store import notify as store
from worker.store import runs
from worker.urls import mask

log = logs.get(__name__)

SENDERS = 4         # notifications POSTed at once per replica
STALE_BATCH = 500   # stale feeds claimed per scheduler tick


@dataclass(frozen=True)
class _RunEnded:
    run_id: int
    status: str
    rows_read: int
    rejected: int
    feed_disabled: str | None


class Notifier:
    """`run` is the daemon's side task; `after_run` and `check_stale` hand work to it."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.queue: asyncio.Queue[_RunEnded | store.Stale] = asyncio.Queue(settings.notify_queue)
        self.policy = RetryPolicy(attempts=settings.notify_attempts,
                                  base_s=settings.retry_base_s, cap_s=settings.retry_cap_s,
                                  jitter=settings.retry_jitter)
        self._guard = Policy(settings.networks())
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    # -- handing work over (never waits on a receiver) -----------------------------------

    async def after_run(self, run_id: int, status: str, rows_read: int, rejected: int) -> None:
        """A pull run ended and is recorded: disable its feed if it failed often enough in
        a row, and queue its notification when it may make one."""
        disabled = None
        if status == "failed":
            try:
                disabled = await store.auto_disable(self.pool, run_id,
                                                    self.settings.auto_disable_after)
            except Exception as exc:  # the next failure tries again
                log.warning("feed.auto_disable_failed", run_id=run_id,
                            error=f"{type(exc).__name__}: {exc}")
            if disabled is not None:
                log.warning("feed.auto_disabled", run_id=run_id, reason=disabled)
        if message.may_notify(status, rejected):
            self._submit(_RunEnded(run_id, status, rows_read, rejected, disabled), "run")

    async def check_stale(self) -> int:
        """On the leading scheduler, each tick: claim the notifications of feeds gone stale
        and queue them; how many."""
        found = await store.claim_stale(self.pool, bool(self.settings.notify_url), STALE_BATCH)
        for stale in found:
            self._submit(stale, message.STALE)
        return len(found)

    def _submit(self, work: _RunEnded | store.Stale, event: str) -> None:
        try:
            self.queue.put_nowait(work)
        except asyncio.QueueFull:
            metrics.NOTIFICATIONS.labels(event, "dropped").inc()
            log.warning("notify.dropped", queue=self.settings.notify_queue,
                        run_id=getattr(work, "run_id", None),
                        feed_id=getattr(work, "feed_id", None))

    # -- sending ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Send what is queued, SENDERS at once, until drained."""
        try:
            await asyncio.gather(*(self._sender() for _ in range(SENDERS)))
        finally:
            for session in self._sessions.values():
                await session.close()
            self._sessions.clear()

    async def drain(self, grace_s: float) -> None:
        """Send what is queued within the grace period, then stop the senders."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), grace_s)
        for _ in range(SENDERS):
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(_STOP)

    async def _sender(self) -> None:
        while True:
            work = await self.queue.get()
            try:
                if work is _STOP:
                    return
                await self._send(work)
            except Exception as exc:  # a database hiccup: this one is lost, logged
                log.warning("notify.failed", error=f"{type(exc).__name__}: {exc}",
                            run_id=getattr(work, "run_id", None),
                            feed_id=getattr(work, "feed_id", None))
            finally:
                self.queue.task_done()

    async def _send(self, work: _RunEnded | store.Stale) -> None:
        if isinstance(work, store.Stale):
            target = await store.feed_target(self.pool, work.feed_id)
            if target is None:
                return
            stale = {"lastSucceededRunId": work.last_run_id,
                     "lastSucceededAt": (work.last_succeeded_at.isoformat()
                                         if work.last_succeeded_at else None),
                     "everySeconds": work.every_s}
            payload = message.body(message.STALE, target.feed_id, target.name, stale=stale)
            await self._deliver(work.notification_id, f"stale-{work.feed_id}-"
                                f"{work.last_run_id or 0}", message.STALE, target, payload)
            return
        run = await runs.get_run(self.pool, work.run_id)
        if not run:
            return
        target = await store.feed_target(self.pool, run["inventory_feed_id"])
        if target is None:
            return
        share = (target.rejected_share if target.rejected_share is not None
                 else self.settings.notify_rejected_share)
        event = message.run_event(work.status, work.rows_read, work.rejected, share)
        if event is None or not (target.url or self.settings.notify_url):
            return
        key = f"run-{work.run_id}"
        notification_id = await store.claim(self.pool, key, target.feed_id, work.run_id, event)
        if notification_id is None:
            return  # decided already: by another replica, or before a retry
        payload = message.body(event, target.feed_id, target.name, run=run,
                               feed_disabled=work.feed_disabled)
        await self._deliver(notification_id, key, event, target, payload)

    async def _deliver(self, notification_id: int, key: str, event: str,
                       target: store.FeedTarget, payload: bytes) -> None:
        own = bool(target.url)
        url = target.url if own else self.settings.notify_url
        if not url:
            return
        secret = (target.secret if own else None) or self.settings.notify_secret or None
        delivery = await self._post(url, own, secret, message.headers(secret, event, key,
                                                                       payload), payload)
        await store.finish(self.pool, notification_id, delivery.sent, delivery.attempts,
                           delivery.error)
        bound = log.bind(feed_id=target.feed_id, event=event, key=key, url=mask(url),
                         attempts=delivery.attempts)
        if delivery.sent:
            metrics.NOTIFICATIONS.labels(event, "sent").inc()
            bound.info("notify.sent")
        else:
            metrics.NOTIFICATIONS.labels(event, "failed").inc()
            bound.warning("notify.failed", error=delivery.error)

    async def _post(self, url: str, guarded: bool, secret: str | None,
                    headers: dict[str, str], payload: bytes) -> Delivery:
        """A feed's own URL is judged by the address guard, as its feed's URL is; the
        worker's (the operator's) is not."""
        if guarded:
            try:
                self._guard.check_literal(URL(url).host or "")
            except Exception as exc:
                return Delivery(False, 0, f"{type(exc).__name__}: {exc} (POST {mask(url)})")
        return await post(self._session(guarded), url, payload, headers, self.policy,
                          self.settings.notify_timeout_s, secret)

    def _session(self, guarded: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(guarded)
        if session is None or session.closed:
            connector = (aiohttp.TCPConnector(resolver=GuardedResolver(self._guard),
                                              use_dns_cache=False)
                         if guarded else aiohttp.TCPConnector())
            session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": f"feed-worker/{__version__}"})
            self._sessions[guarded] = session
        return session


_STOP: Any = object()
