"""Pull-requests for the fleet benchmark: feeds made in bulk, pull-requests published at
once (each confirmed, `mandatory`), the runs they made read back from feed_runs, and the
feed.run-completed events heard on a queue of the benchmark's own."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass, field

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from tests.support.wait import poll
from worker import broker
from worker import constants as C

PUBLISH_IN_FLIGHT = 1000
POLL_S = 0.2

CREATE_PROVIDERS = """
INSERT INTO dropship_providers (name)
SELECT $1 || ' ' || n FROM generate_series(1, $2::int) AS n
RETURNING id
"""
# Pulled only when asked: the daemon's scheduler (on by default) leaves them alone.
CREATE_FEEDS = """
INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type, resource_location,
                             automated_fetching)
SELECT p, $1 || ' ' || p, 'ftp_csv', url, 'disabled'
FROM unnest($2::bigint[], $3::text[]) AS t(p, url)
RETURNING id
"""
PROGRESS = """
SELECT count(*) FILTER (WHERE finished_at IS NOT NULL) AS done, count(*) AS claimed
FROM feed_runs WHERE message_id = ANY($1::text[])
"""
RUNS = """
SELECT message_id, inventory_feed_id, status, rows_read, inserted, updated, unchanged,
       rejected, error, timings::text AS timings,
       extract(epoch FROM started_at)::float8 AS started,
       extract(epoch FROM finished_at)::float8 AS finished
FROM feed_runs WHERE message_id = ANY($1::text[])
"""


class BrokerError(Exception):
    """The broker did not take a pull-request."""


async def create_feeds(pg: asyncpg.Connection, label: str, urls: list[str]) -> list[int]:
    """One provider and one pulled CSV feed per URL (in order); the feeds' ids."""
    providers = [r["id"] for r in await pg.fetch(CREATE_PROVIDERS, label, len(urls))]
    return [r["id"] for r in await pg.fetch(CREATE_FEEDS, label, providers, urls)]


@dataclass
class Batch:
    """Pull-requests published together: message id -> (feed id, wall time it was sent)."""

    sent: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def first(self) -> float:
        return min(at for _, at in self.sent.values())

    @property
    def ids(self) -> list[str]:
        return list(self.sent)


async def publish(exchange: aio_pika.abc.AbstractExchange, feed_ids: list[int],
                  in_flight: int = PUBLISH_IN_FLIGHT) -> Batch:
    """A pull-request per feed (persistent, a fresh message id, `mandatory`), at most
    `in_flight` unconfirmed; each one's send time is taken just before it goes out."""
    batch = Batch()

    async def one(feed_id: int) -> None:
        message_id = f"fleet-{uuid.uuid4()}"
        body = orjson.dumps({"feedId": feed_id, "force": False})
        message = broker.json_message(body, message_id)
        batch.sent[message_id] = (feed_id, time.time())
        await exchange.publish(message, routing_key=C.ROUTING_PULL, mandatory=True)

    for i in range(0, len(feed_ids), in_flight):
        results = await asyncio.gather(*(one(f) for f in feed_ids[i:i + in_flight]),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise BrokerError(f"the broker did not take {len(failed)} pull-request(s): "
                              f"{failed[0]!r}")
    return batch


async def wait_finished(pg: asyncpg.Connection, batch: Batch, deadline_s: float) -> bool:
    """Until every pull-request of the batch made a run that finished; False at the
    deadline."""
    ids, want = batch.ids, len(batch.sent)

    async def finished() -> bool:
        row = await pg.fetchrow(PROGRESS, ids)
        return row is not None and row["done"] >= want

    return await poll(finished, timeout_s=deadline_s, every_s=POLL_S) is not None


@dataclass(frozen=True)
class Outcome:
    """The runs of a batch: completion times (publish -> finished_at) and what they did."""

    runs: int
    wall_s: float | None      # first publish -> last finished_at
    completion_s: list[float]  # each run's publish -> finished_at, sorted
    statuses: dict[str, int]
    totals: dict[str, int]    # rows_read, inserted, updated, unchanged, rejected
    first_error: str | None
    last_finished: float | None

    def pct(self, p: float) -> float | None:
        return percentile(self.completion_s, p)


async def outcome(pg: asyncpg.Connection, batch: Batch) -> Outcome:
    rows = await pg.fetch(RUNS, batch.ids)
    done = [r for r in rows if r["finished"] is not None]
    completion = sorted(r["finished"] - batch.sent[r["message_id"]][1] for r in done)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    totals = {k: sum(r[k] or 0 for r in rows)
              for k in ("rows_read", "inserted", "updated", "unchanged", "rejected")}
    last = max((r["finished"] for r in done), default=None)
    error = next((r["error"] for r in rows if r["error"]), None)
    wall = last - batch.first if last is not None and batch.sent else None
    return Outcome(len(rows), wall, completion, statuses, totals, error, last)


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted `values` (p in 0..100)."""
    if not values:
        return None
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


class RunEvents:
    """feed.run-completed events on an exclusive queue of the benchmark's own."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[float, dict[str, object]]] = asyncio.Queue()
        self.channel: AbstractChannel | None = None

    async def start(self, connection: AbstractConnection) -> None:
        self.channel = await connection.channel()
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(C.EXCHANGE, C.ROUTING_RUN_COMPLETED)

        async def on_message(message: AbstractIncomingMessage) -> None:
            self.queue.put_nowait((time.time(), orjson.loads(message.body)))

        await queue.consume(on_message, no_ack=True)

    async def next_for(self, feed_id: int, timeout_s: float) -> tuple[float, dict[str, object]]:
        """The next event of `feed_id` (others are dropped): (wall time heard, event)."""
        async with asyncio.timeout(timeout_s):
            while True:
                heard, event = await self.queue.get()
                if event.get("feedId") == feed_id:
                    return heard, event

    async def close(self) -> None:
        if self.channel is not None and not self.channel.is_closed:
            await self.channel.close()
