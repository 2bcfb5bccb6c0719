"""One push micro-batch: many feed-update messages applied with one COPY and one merge.

Within a group, updates of one item are folded in order (or by inventoryUpdatedAt, when
they carry it); a message whose id was applied before is a repeat and changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from worker import constants as C
from worker import logs
from worker.errors import (
    DEAD_FEED_DISABLED,
    DEAD_FEED_SETTINGS,
    DEAD_UNKNOWN_FEED,
    BadMessage,
    FeedError,
)
from worker.feedmapping import push_rules
from worker.gcpause import gc_paused
from worker.messages import FeedUpdate, decode_update
from worker.model import StoredReject
from worker.pushmap import Item, apply_rules, to_item
from worker.rules import Applier
from worker.settings import Settings
from worker.store import push as store
from worker.store.db import Conn
from worker.store.push import FeedCounts

log = logs.get(__name__)


class Fate(enum.Enum):
    APPLIED = "applied"
    REPEAT = "repeat"      # its message id was applied before: no effect
    DEAD = "dead"          # dead-lettered with a reason


@dataclass
class Envelope:
    """A delivery, as the pipeline sees it (nothing of the broker's client).

    `order_at` orders its variants that carry no inventoryUpdatedAt (see order_time);
    without it, the time the envelope was made stands in."""

    body: bytes
    message_id: str | None = None
    order_at: datetime | None = None
    replay_id: str | None = None
    update: FeedUpdate | None = None
    fate: Fate = Fate.APPLIED
    reason: str = ""
    error_class: str = ""  # of the error that dead-lettered it, when one did
    dead_kind: str = ""    # why it is dead-lettered, one of errors.DEAD_LETTER_REASONS
    rejected: int = 0      # its variants rejected by the value checks

    def __post_init__(self) -> None:
        if self.order_at is None:
            self.order_at = datetime.now(UTC)

    def decode(self) -> None:
        try:
            self.update = decode_update(self.body)
        except BadMessage as exc:
            self.fate, self.reason, self.dead_kind = Fate.DEAD, str(exc), exc.kind

    def reset(self) -> None:
        """Undo what a rolled-back transaction decided (repeats, feeds gone)."""
        if self.update is not None:
            self.fate, self.reason, self.error_class = Fate.APPLIED, "", ""
            self.dead_kind = ""


def order_time(headers: Mapping[str, Any] | None, received_at: datetime,
               max_skew_s: float) -> datetime:
    """The time that orders a message's updates among others of the same items: the
    publisher's timestamp_in_ms header; else the time the worker first received it (kept in
    a header when it was dead-lettered, so that a replay keeps its place); else now, when
    it was received. A time further than `max_skew_s` in the future is not trusted."""
    headers = headers or {}
    latest = received_at + timedelta(seconds=max_skew_s)
    ms = headers.get(C.HEADER_TIMESTAMP_MS)
    if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
        try:
            t = datetime.fromtimestamp(ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            t = None
        if t is not None and t <= latest:
            return t
    first = headers.get(C.HEADER_FIRST_RECEIVED)
    if isinstance(first, bytes):
        first = first.decode(errors="replace")
    if isinstance(first, str):
        try:
            t = datetime.fromisoformat(first)
        except ValueError:
            t = None
        if t is not None:
            t = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
            if t <= latest:
                return t
    return received_at


@dataclass
class GroupReport:
    counts: dict[int, FeedCounts]
    items: int
    # with commit(outcomes=True): each item's outcome and stored row, by (feed, external id)
    outcomes: dict[tuple[int, str], str] = dataclasses.field(default_factory=dict)
    rows: dict[tuple[int, str], asyncpg.Record] = dataclasses.field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.counts.values())


@dataclass
class Prepared:
    """A group decoded, checked and folded: the CPU half of applying it, done while the
    previous group's transaction runs."""

    envelopes: Sequence[Envelope]
    counts: dict[int, FeedCounts]
    items: dict[tuple[int, str], Item]
    lines: list[str]  # the items as COPY lines, in key order


class Group:
    """A group being collected: each message is decoded and folded as it arrives, so that
    the CPU half of applying the group is done while the previous group's transaction
    runs, and closing the group leaves only the COPY lines to build."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envelopes: list[Envelope] = []
        self.counts: dict[int, FeedCounts] = {}
        self.items: dict[tuple[int, str], Item] = {}
        self.lines: dict[tuple[int, str], str] = {}  # each item's COPY line, kept current
        self.variants = 0  # received, folded or not

    def add(self, e: Envelope) -> None:
        if e.update is None and e.fate is Fate.APPLIED:
            e.decode()
        e.rejected = 0
        self.envelopes.append(e)
        if e.update is None or e.fate is not Fate.APPLIED:
            self.variants += 1
            return
        c = self.counts.setdefault(e.update.feed_id, FeedCounts())
        c.messages += 1
        c.received += len(e.update.variants)
        self.variants += len(e.update.variants)
        _fold_message(e, e.update, c, self.items, self.settings, self.lines)

    def close(self) -> Prepared:
        """The group as it stands; its COPY lines were made as messages came, in key
        order now (the merge then walks the unique index front to back)."""
        lines = self.lines
        return Prepared(self.envelopes, self.counts, self.items,
                        [lines[k] for k in sorted(lines)])


async def prepare(settings: Settings, envelopes: Sequence[Envelope]) -> Prepared:
    """Decode and fold a whole group at once (see Group for folding as messages come)."""
    with gc_paused():  # once for the whole group: re-enabling it costs a collection
        return (await _folded(envelopes, settings)).close()


def _lines(items: dict[tuple[int, str], Item]) -> list[str]:
    """In key order: the merge then walks the unique index front to back."""
    return [items[k].copy_line() for k in sorted(items)]


async def commit(pool: asyncpg.Pool, settings: Settings, group: Prepared,
                 after: asyncio.Future[None] | None = None,
                 outcomes: bool = False,
                 committed: asyncio.Future[None] | None = None) -> GroupReport:
    """The database half: one transaction; every envelope's fate is decided here. With
    `after` (the previous group's transaction is over), the group's items are staged and
    its message ids remembered first, and the rest waits for it: merges take their turns,
    in order, while the next group's COPY overlaps the previous group's merge. `committed`
    is set as soon as the transaction has committed (before its connection is reset for
    the pool: the next group's merge need not wait for that). With `outcomes`, the report
    has each item's outcome and its stored row, read after the merge in its
    transaction."""
    live = [e for e in group.envelopes if e.fate is Fate.APPLIED and e.update is not None]
    if not live:
        await wait_turn(after)
        return GroupReport({}, 0)
    # The feeds are read on another connection while this one begins and stages the
    # group as it was folded (what nearly always stands): two round trips less in turn.
    loading = asyncio.ensure_future(
        store.load_feeds(pool, sorted({e.update.feed_id for e in live if e.update})))
    loading.add_done_callback(_retrieved)
    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                await store.stage(conn, group.lines)
                report = await _transaction(conn, settings, group, live, await loading,
                                            after, outcomes)
            _signal(committed)
    finally:
        if not loading.done():
            loading.cancel()
    return report


async def _transaction(conn: Conn, settings: Settings, group: Prepared, live: list[Envelope],
                       feeds: dict[int, asyncpg.Record], after: asyncio.Future[None] | None,
                       outcomes: bool) -> GroupReport:
    """The group in its transaction, its items staged as folded."""
    gone = set()
    rules, broken = _feed_rules(feeds)
    for e in live:
        feed = feeds.get(e.update.feed_id) if e.update is not None else None
        feed_id = e.update.feed_id if e.update is not None else 0
        if feed is None or not feed["enabled"] or feed["provider_archived"]:
            e.fate = Fate.DEAD
            e.reason = (f"feed {feed_id} does not exist" if feed is None
                        else f"feed {feed_id} is disabled")
            e.dead_kind = DEAD_UNKNOWN_FEED if feed is None else DEAD_FEED_DISABLED
            gone.add(feed_id)
        elif feed_id in broken:
            e.fate, e.reason = Fate.DEAD, f"feed {feed_id}: {broken[feed_id]}"
            e.dead_kind = DEAD_FEED_SETTINGS
            gone.add(feed_id)
    counts, items = group.counts, group.items
    if gone:  # their items are theirs alone: drop them, no need to fold again
        counts = {f: c for f, c in counts.items() if f not in gone}
        items = {k: i for k, i in items.items() if k[0] not in gone}
    if rules.keys() & counts.keys():
        counts, items = _ruled(rules, counts, items, settings)
    live = [e for e in live if e.fate is Fate.APPLIED]
    if not live:
        await wait_turn(after)
        return GroupReport({}, 0)
    if items is not group.items:  # what was staged is not what stands
        await store.stage(conn, _lines(items), again=True)
    # Remembering the ids takes no lock but on the ids themselves: one that the
    # previous batch holds (uncommitted) waits for it, and is then a repeat.
    ids = [e.message_id for e in live if e.message_id]
    fresh = await store.remember(conn, ids)
    seen: set[str] = set()
    repeats = False
    for e in live:
        if e.message_id is None:
            continue
        if e.message_id not in fresh or e.message_id in seen:
            e.fate, e.reason = Fate.REPEAT, "message already applied"
            repeats = True
        seen.add(e.message_id)
    if repeats:  # rare: fold again without them
        live = [e for e in live if e.fate is Fate.APPLIED]
        if not live:
            await wait_turn(after)
            if any(e.replay_id for e in group.envelopes):
                await _record_replays(conn, settings, group.envelopes)
            return GroupReport({}, 0)
        again = await _folded(live, settings)
        counts, items = again.counts, again.items
        if rules.keys() & counts.keys():
            counts, items = _ruled(rules, counts, items, settings)
        await store.stage(conn, _lines(items), again=True)
    await wait_turn(after)
    per_item: dict[tuple[int, str], str] | None = {} if outcomes else None
    merged = await store.merge(conn, {f: feeds[f] for f in counts}, settings.item_history,
                               per_item)
    for feed_id, c in counts.items():
        run_id, got = merged[feed_id]
        c.distinct, c.inserted = got.get("distinct_rows", 0), got.get("inserted", 0)
        c.updated, c.stale = got.get("updated", 0), got.get("stale", 0)
        c.held, c.connected = got.get("held", 0), got.get("connected", 0)
        c.ambiguous = got.get("ambiguous", 0)
        await store.record_run(conn, run_id, c)
    if any(e.replay_id for e in group.envelopes):
        await _record_replays(conn, settings, group.envelopes)
    if per_item is None:
        return GroupReport(counts, len(items))
    rows = await store.stored_items(conn, list(per_item))
    return GroupReport(counts, len(items), per_item, rows)


def _signal(stage: asyncio.Future[None] | None) -> None:
    """A stage of the group is over (once: a cancelled waiter may have ended it)."""
    if stage is not None and not stage.done():
        stage.set_result(None)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """A task whose failure is raised where it is awaited, or not at all (the group failed
    first): never reported as unretrieved."""
    if not task.cancelled():
        task.exception()


def _feed_rules(feeds: Mapping[int, asyncpg.Record]
                ) -> tuple[dict[int, Any], dict[int, str]]:
    """The value rules of the feeds that have some, and why a feed's cannot be read."""
    rules: dict[int, Any] = {}
    broken: dict[int, str] = {}
    for feed_id, feed in feeds.items():
        try:
            found = push_rules(feed["mapping"], feed["resource_type"], feed["csv_has_header"])
        except FeedError as exc:
            broken[feed_id] = str(exc)
            continue
        if found:
            rules[feed_id] = found
    return rules, broken


def _ruled(rules: Mapping[int, Any], counts: dict[int, FeedCounts],
           items: dict[tuple[int, str], Item], settings: Settings
           ) -> tuple[dict[int, FeedCounts], dict[tuple[int, str], Item]]:
    """The feeds' value rules on their items (worker/rules.py, as pulls apply them), on
    copies: a group tried again after a failed transaction starts from its folded items
    and counts again. Items a rule rejects are rejects of their feed's push run."""
    counts = {f: dataclasses.replace(c, rejects=list(c.rejects), refused=dict(c.refused))
              for f, c in counts.items()}
    items = dict(items)
    for feed_id in rules.keys() & counts.keys():
        keys = [k for k in items if k[0] == feed_id]
        applier = Applier(rules[feed_id])
        ruled, bad = apply_rules(applier, [items[k] for k in keys])
        c = counts[feed_id]
        for k, item in zip(keys, ruled, strict=True):
            items[k] = item
        for j, why in sorted(bad.items()):
            item = items.pop(keys[j])
            c.rejected += 1
            c.refused[item.external_id] = why
            if len(c.rejects) < settings.max_stored_rejects:
                raw = orjson.dumps(item.variant).decode()[: settings.max_reject_raw_chars]
                c.rejects.append(StoredReject(item.index, raw, why, item.message_id))
        c.rules = {**applier.counts}
    return counts, items


async def _record_replays(conn: Conn, settings: Settings,
                          envelopes: Sequence[Envelope]) -> None:
    """What each replayed message (x-replay-id) came to, in the group's transaction: its
    variants applied (written, or found unchanged), stale (the stored item's order time is
    newer) and rejected; or that it was a repeat, or dead-lettered."""
    replayed = [e for e in envelopes if e.replay_id]
    keys: dict[tuple[int, str], datetime | None] = {}
    wanted: list[tuple[Envelope, list[tuple[int, str, datetime | None]]]] = []
    for e in replayed:
        mine: list[tuple[int, str, datetime | None]] = []
        if e.fate is Fate.APPLIED and e.update is not None:
            for variant in e.update.variants:
                try:
                    item = to_item(e.update.feed_id, variant, e.order_at, settings)
                except ValueError:
                    continue
                mine.append((item.feed_id, item.external_id, item.order_at))
                keys[(item.feed_id, item.external_id)] = None
        wanted.append((e, mine))
    stored = await store.order_times(conn, list(keys))
    rows = []
    for e, mine in wanted:
        variants = len(e.update.variants) if e.update is not None else 0
        if e.fate is Fate.DEAD:
            continue  # recorded once it is dead-lettered (pushretry.record_dead_replays)
        if e.fate is Fate.REPEAT:
            rows.append((e.replay_id, e.message_id or "", "repeat", variants, 0, 0, 0, None))
            continue
        stale = sum(1 for f, x, t in mine
                    if t is not None and (s := stored.get((f, x))) is not None and s > t)
        applied = len(mine) - stale
        outcome = "applied" if applied else ("stale" if stale else "rejected")
        rows.append((e.replay_id, e.message_id or "", outcome, variants, applied, stale,
                     e.rejected, None))
    await store.record_replays(conn, rows)


async def wait_turn(after: asyncio.Future[None] | None) -> None:
    """Wait until the previous group's transaction is over (shielded: a cancelled wait
    must not cancel the previous group's signal)."""
    if after is not None:
        await asyncio.shield(after)


async def apply_group(pool: asyncpg.Pool, settings: Settings,
                      envelopes: Sequence[Envelope]) -> GroupReport:
    """Prepare and commit one group (what the consumer does, one stage after the other)."""
    return await commit(pool, settings, await prepare(settings, envelopes))


_YIELD_EVERY = 500  # variants folded between two looks at the event loop


async def _folded(envelopes: Sequence[Envelope], settings: Settings) -> Group:
    """The envelopes in a new group; yields to the event loop now and then so that a
    transaction running meanwhile keeps moving."""
    group = Group(settings)
    last = 0
    for e in envelopes:
        group.add(e)
        if group.variants - last >= _YIELD_EVERY:
            last = group.variants
            await asyncio.sleep(0)
    return group


def _fold_message(e: Envelope, update: FeedUpdate, c: FeedCounts,
                  items: dict[tuple[int, str], Item], settings: Settings,
                  lines: dict[tuple[int, str], str]) -> None:
    """One message's variants into the group's items (later updates folded in), and
    their COPY lines."""
    feed_id, default_time = update.feed_id, e.order_at
    for index, variant in enumerate(update.variants):
        try:
            item = to_item(feed_id, variant, default_time, settings)
            item.index, item.message_id = index, e.message_id
        except ValueError as exc:
            c.rejected += 1
            e.rejected += 1
            if len(c.rejects) < settings.max_stored_rejects:
                raw = orjson.dumps(variant).decode()[: settings.max_reject_raw_chars]
                c.rejects.append(StoredReject(index, raw, str(exc), e.message_id))
            continue
        key = (feed_id, item.external_id)
        prev = items.get(key)
        if prev is None:
            items[key] = item
            lines[key] = item.copy_line()
        else:
            prev.absorb(item)
            lines[key] = prev.copy_line()
            c.duplicates += 1
