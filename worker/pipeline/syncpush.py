"""Group commit of synchronous pushes (the HTTP API's parse-webhook with one variant).

A request's variant waits while a group is being applied; the requests that gathered
meanwhile go together in the next group: one transaction, one merge, through the
consumer's code (push.prepare and pushretry's Applier: transient failures tried again, a
group that fails for good halved until only the variant at fault fails). A quiet API
applies a lone request at once; a busy one applies many per transaction.

Each request is an envelope of its own (one variant, no message id, its arrival time as
its order time) and gets its own item's outcome and stored row, read in the group's
transaction. Two requests for the same item never share a group: the later one waits for
the next, so that each is applied (history, the ordering guard, the daily limit) and
answered as it would be alone, in arrival order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from worker import logs
from worker.messages import FeedUpdate
from worker.pipeline.push import Envelope, prepare, wait_turn
from worker.pipeline.pushretry import Applier
from worker.retry import RetryPolicy
from worker.settings import Settings

log = logs.get(__name__)

# A caller is waiting: a few quick tries, then the error (503), not the daemon's patience.
POLICY = RetryPolicy(attempts=3, base_s=0.05, cap_s=0.5, jitter=0.5)
MAX_GROUP = 1000  # requests in one transaction


@dataclass(frozen=True)
class Result:
    """What one request's variant came to. `envelope.fate` DEAD: the feed did not take it
    (with the reason); `envelope.rejected`: the value checks refused it; `refused`: a
    value rule of the feed did (its reason); else `outcome` (inserted, updated,
    unchanged, stale, held) and `row`, the stored item (None when held and new)."""

    envelope: Envelope
    outcome: str | None = None
    row: asyncpg.Record | None = None
    refused: str | None = None


@dataclass
class _Waiting:
    envelope: Envelope
    key: tuple[int, str] | None  # None: no usable externalId (it will be a reject)
    future: asyncio.Future[Result]


def item_key(feed_id: int, variant: Mapping[str, Any]) -> tuple[int, str] | None:
    """The item a variant writes, as the merge keys it (pushmap.to_item's externalId)."""
    ext = variant.get("externalId")
    if isinstance(ext, bool) or not isinstance(ext, str | int):
        return None
    return (feed_id, str(ext).strip())


class GroupCommitter:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 max_group: int = MAX_GROUP) -> None:
        self.settings = settings
        self.applier = Applier(pool, settings, policy=POLICY, hold=False, outcomes=True)
        self.max_group = max_group
        self.waiting: deque[_Waiting] = deque()
        self.task: asyncio.Task[None] | None = None
        self.groups = 0  # transactions' groups applied (for tests and metrics)
        self._last: asyncio.Future[None] | None = None  # the last group's transaction is over
        self._running: set[asyncio.Task[None]] = set()

    async def push(self, feed_id: int, variant: dict[str, Any]) -> Result:
        """Apply the variant with whatever else is waiting; its result (raises what made
        the whole group fail: the database unavailable after the tries)."""
        e = Envelope(b"", update=FeedUpdate(feed_id, [variant]))
        w = _Waiting(e, item_key(feed_id, variant), asyncio.get_running_loop().create_future())
        self.waiting.append(w)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="api.group_commit")
        return await asyncio.shield(w.future)  # a client gone does not cancel the group

    async def close(self) -> None:
        """Let the groups waiting finish (the requests in flight are answered)."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self) -> None:
        """Groups in a pipeline, as the consumer's: while one group's transaction runs,
        the next is staged and waits for its turn to merge; two in the database at most.
        The turns chain on across runs (`_last`), so that a request for an item is never
        merged before an earlier one's."""
        await asyncio.sleep(0)  # requests that arrived in the same turn of the loop join
        while self.waiting:
            group = self._take()
            before, self._last = self._last, asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._answer(group, before, self._last))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            await wait_turn(before)
            await asyncio.sleep(0)  # requests that came meanwhile join the next group

    async def _answer(self, group: list[_Waiting], after: asyncio.Future[None] | None,
                      applied: asyncio.Future[None]) -> None:
        try:
            await self._apply(group, after)
        except Exception as exc:  # the database away after the tries: each is told
            for w in group:
                if not w.future.done():
                    w.future.set_exception(exc)
        finally:
            await wait_turn(after)  # the next group merges after this one and the one before
            if not applied.done():
                applied.set_result(None)

    def _take(self) -> list[_Waiting]:
        """The next group: in arrival order, at most one request per item (a later one for
        the same item stays, in its order, for a later group)."""
        group: list[_Waiting] = []
        seen: set[tuple[int, str]] = set()
        later: deque[_Waiting] = deque()
        while self.waiting:
            w = self.waiting.popleft()
            if len(group) >= self.max_group or (w.key is not None and w.key in seen):
                later.append(w)
                continue
            if w.key is not None:
                seen.add(w.key)
            group.append(w)
        self.waiting = later
        return group

    async def _apply(self, group: list[_Waiting], after: asyncio.Future[None] | None) -> None:
        prepared = await prepare(self.settings, [w.envelope for w in group])
        done = await self.applier.apply(prepared, after)
        self.groups += 1
        outcomes: dict[tuple[int, str], str] = {}
        rows: dict[tuple[int, str], asyncpg.Record] = {}
        refused: dict[tuple[int, str], str] = {}
        for report in done.reports:
            outcomes.update(report.outcomes)
            rows.update(report.rows)
            for feed_id, c in report.counts.items():
                refused.update(((feed_id, x), why) for x, why in c.refused.items())
        for w in group:
            if w.future.done():
                continue
            key = w.key
            w.future.set_result(Result(
                w.envelope, outcomes.get(key) if key else None,
                rows.get(key) if key else None, refused.get(key) if key else None))
