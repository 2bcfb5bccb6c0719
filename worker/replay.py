"""`feed-worker replay`: look at the dead-lettered messages, and send them back safely.

A dead letter keeps its body, message_id and headers, plus why (x-feed-worker-error, or the
broker's x-death) and where it came from (x-original-routing-key). `requeue` publishes the
selected ones again to the inventory exchange with their original routing key, each
confirmed and `mandatory`, and takes each off the dead-letter queue only once the broker
confirmed it. They keep their order times, so an update older than the stored item's is
skipped as stale, and carry one replay id; the daemon records what each came to in
replay_outcomes, which `requeue` waits for and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from worker import broker
from worker import constants as C
from worker.deadletters import DeadLetter, Selection, describe, replay_headers
from worker.errors import ConfigError, TransientError
from worker.settings import Settings
from worker.store import db
from worker.store import replay as store

POLL_S = 0.25  # between two looks at replay_outcomes while waiting


def _dead(message: AbstractIncomingMessage) -> DeadLetter:
    return describe(message.headers, message.routing_key, message.message_id, message.body)


class _Scan:
    """Dead letters taken off the queue one at a time and held unacknowledged until the
    queue has no more; then every one not removed goes back, in the order taken."""

    def __init__(self, queue: AbstractQueue) -> None:
        self.queue = queue
        self.held: list[AbstractIncomingMessage] = []
        self.done = False

    async def next(self) -> AbstractIncomingMessage | None:
        message = None if self.done else await self.queue.get(no_ack=False, fail=False)
        if message is None:
            self.done = True
        else:
            self.held.append(message)
        return message

    async def remove(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self.held.remove(message)

    async def give_back(self) -> None:
        # A quorum queue puts a returned message at its tail (RabbitMQ 3.x), so the order
        # is kept only when every message is taken first and all go back one by one in the
        # order taken (a closed channel would return them in another order).
        while await self.next() is not None:
            pass
        for message in self.held:
            await message.nack(requeue=True)
        self.held.clear()


@contextlib.asynccontextmanager
async def _scan(settings: Settings) -> AsyncIterator[tuple[_Scan, aio_pika.abc.AbstractChannel]]:
    """A scan of the dead-letter queue, and a channel with publisher confirms beside it.
    Whatever was not removed goes back when the block ends."""
    connection = await broker.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(C.QUEUE_DEAD_LETTER, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            raise ConfigError(f"there is no queue {C.QUEUE_DEAD_LETTER} (start `feed-worker "
                              "run` once to declare it)") from None
        scan = _Scan(queue)
        # on_return_raises: an unroutable `mandatory` message is an error, not a silent loss.
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            yield scan, publisher
        finally:
            await scan.give_back()
    finally:
        await connection.close()


async def list_dead(settings: Settings, selection: Selection,
                    limit: int | None) -> list[DeadLetter]:
    """The dead letters the selection matches (up to `limit`), left in the queue as they
    were."""
    found: list[DeadLetter] = []
    now = datetime.now(UTC)
    async with _scan(settings) as (scan, _):
        while (limit is None or len(found) < limit) and (message := await scan.next()):
            dead = _dead(message)
            if selection.matches(dead, now):
                found.append(dead)
    return found


def list_line(d: DeadLetter) -> str:
    when = d.dead_lettered_at.isoformat(timespec="seconds") if d.dead_lettered_at else "-"
    body = d.body[:120].decode(errors="replace").replace("\t", " ").replace("\n", " ")
    return f"{d.message_id or '-'}\t{d.routing_key}\t{when}\t{d.reason}\t{body}"


@dataclass
class Sent:
    """One selected dead letter, and what became of it."""

    dead: DeadLetter
    error: str = ""  # not sent (returned, nacked, unconfirmed): it stays dead-lettered
    outcome: store.Outcome | None = None

    @property
    def tracked(self) -> bool:
        """The daemon records an outcome for it: a feed-update with a message id."""
        return self.dead.routing_key == C.ROUTING_UPDATE and bool(self.dead.message_id)


@dataclass
class Replay:
    replay_id: str
    dry_run: bool
    messages: list[Sent] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)  # asked for, not found
    waited_s: float | None = None  # None: outcomes were not waited for

    @property
    def sent(self) -> list[Sent]:
        return [s for s in self.messages if not s.error]


async def requeue(settings: Settings, selection: Selection, limit: int | None, *,
                  dry_run: bool = False, wait_s: float | None = 60.0,
                  on_sent: Callable[[Replay], None] | None = None) -> Replay:
    """Send the selected dead letters back (none with dry_run) and, unless wait_s is None,
    wait up to wait_s for the daemon to record what each came to (on_sent is told before
    the wait)."""
    replay = Replay(str(uuid.uuid4()), dry_run)
    conn = None
    if wait_s is not None and not dry_run:
        # Before anything is sent: a database that cannot be read fails the command while
        # the dead letters are still where they were.
        conn = await db.connect(settings.database_url)
    try:
        await _send(settings, selection, limit, replay)
        if on_sent is not None:
            on_sent(replay)
        if conn is not None and wait_s is not None:
            await _wait(conn, replay, wait_s)
    finally:
        if conn is not None:
            await conn.close()
    if selection.message_ids is not None:
        found = {s.dead.message_id for s in replay.messages}
        replay.missing_ids = sorted(selection.message_ids - found)
    return replay


async def _send(settings: Settings, selection: Selection, limit: int | None,
                replay: Replay) -> None:
    now = datetime.now(UTC)
    async with _scan(settings) as (scan, channel):
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        while limit is None or len(replay.messages) < limit:
            message = await scan.next()
            if message is None:
                break
            dead = _dead(message)
            if dead.replay_id == replay.replay_id or not selection.matches(dead, now):
                continue
            sent = Sent(dead)
            replay.messages.append(sent)
            if replay.dry_run:
                continue
            copy = broker.copy_of(message, replay_headers(message.headers, replay.replay_id))
            try:
                await broker.publish_routed(exchange, copy, dead.routing_key)
            except TransientError as exc:
                sent.error = str(exc)
                continue
            # Only now: a message the broker did not confirm stays dead-lettered.
            await scan.remove(message)


async def _wait(conn: db.Conn, replay: Replay, wait_s: float) -> None:
    """Poll replay_outcomes until every tracked message sent has a row, or the deadline."""
    tracked = [s for s in replay.sent if s.tracked]
    ids = sorted({str(s.dead.message_id) for s in tracked})
    started = time.monotonic()
    deadline = started + wait_s
    found: dict[str, store.Outcome] = {}
    while ids:
        found = await store.outcomes(conn, replay.replay_id, ids)
        left = deadline - time.monotonic()
        if len(found) == len(ids) or left <= 0:
            break
        await asyncio.sleep(min(POLL_S, left))
    for s in tracked:
        s.outcome = found.get(str(s.dead.message_id))
    replay.waited_s = wait_s


OUTCOMES = ("applied", "stale", "rejected", "repeat", "dead-lettered")


def report(replay: Replay, out: TextIO) -> int:
    """Print one line per message and a summary; the exit code: 0 when every message sent
    came to an outcome other than dead-lettered (or, not waiting, was sent), 1 otherwise."""
    if replay.dry_run:
        for s in replay.messages:
            warn = ("" if s.dead.ordered or s.dead.routing_key != C.ROUTING_UPDATE
                    else "\tno order time: its variants would count as new")
            print(f"{s.dead.message_id or '-'}\twould send to {s.dead.routing_key}\t"
                  f"{s.dead.reason}{warn}", file=out)
        for i in replay.missing_ids:
            print(f"{i}\tnot found", file=out)
        print(f"dry run: would send {len(replay.messages)} message(s); nothing was sent",
              file=out)
        return 1 if replay.missing_ids else 0
    counts = dict.fromkeys((*OUTCOMES, "pending", "pull", "untracked"), 0)
    for s in replay.messages:
        print(f"{s.dead.message_id or '-'}\t{_line(s, replay.waited_s)}", file=out)
        if not s.error:
            counts[_kind(s, replay.waited_s)] += 1
    for i in replay.missing_ids:
        print(f"{i}\tnot found", file=out)
    sent = len(replay.sent)
    if replay.waited_s is None:
        print(f"sent {sent} (replay {replay.replay_id}; outcomes not awaited)", file=out)
    else:
        extra = "".join(f", {name} {counts[name]}" for name in ("pull", "untracked")
                        if counts[name])
        print(f"sent {sent}: applied {counts['applied']}, stale {counts['stale']}, rejected "
              f"{counts['rejected']}, repeat {counts['repeat']}, dead-lettered again "
              f"{counts['dead-lettered']}, pending {counts['pending']}{extra} "
              f"(replay {replay.replay_id})", file=out)
    failed = len(replay.messages) - sent
    if failed:
        print(f"not sent {failed}: still in {C.QUEUE_DEAD_LETTER}", file=out)
    bad = failed or replay.missing_ids or counts["dead-lettered"] or counts["pending"]
    return 1 if bad else 0


def _kind(s: Sent, waited_s: float | None) -> str:
    if not s.tracked:
        return "pull" if s.dead.routing_key == C.ROUTING_PULL else "untracked"
    if waited_s is None:
        return "untracked"
    return s.outcome.outcome if s.outcome is not None else "pending"


def _line(s: Sent, waited_s: float | None) -> str:
    if s.error:
        return f"not sent\t{s.error}; it stays in {C.QUEUE_DEAD_LETTER}"
    kind = _kind(s, waited_s)
    if kind == "pull":
        return "sent (pull)"
    if kind == "untracked":
        return "sent" if waited_s is None else "sent (not tracked)"
    if kind == "pending":
        return f"pending\tno outcome recorded within {waited_s:g} s"
    o = s.outcome
    assert o is not None
    if kind == "dead-lettered":
        return f"dead-lettered again\t{o.reason or ''}"
    counts = f"variants={o.variants} applied={o.applied} stale={o.stale} rejected={o.rejected}"
    return f"{kind}\t{counts}" + (f"\t{o.reason}" if o.reason else "")


async def list_command(settings: Settings, selection: Selection, limit: int | None,
                       out: TextIO) -> int:
    for d in await list_dead(settings, selection, limit):
        print(list_line(d), file=out)
    return 0


async def requeue_command(settings: Settings, selection: Selection, limit: int | None, *,
                          dry_run: bool, wait_s: float | None, out: TextIO,
                          err: TextIO) -> int:
    def waiting(r: Replay) -> None:
        tracked = sum(1 for s in r.sent if s.tracked)
        if wait_s is not None and not dry_run and tracked:
            print(f"sent {len(r.sent)} message(s) (replay {r.replay_id}); waiting up to "
                  f"{wait_s:g} s for the outcomes of {tracked}", file=err, flush=True)

    replay = await requeue(settings, selection, limit, dry_run=dry_run, wait_s=wait_s,
                           on_sent=waiting)
    return report(replay, out)
