"""The latency benchmark's publisher, in a child process of its own: messages encoded first,
then written on schedule (open loop: the schedule is kept whatever the consumer does), or as
fast as the broker takes them; each message's send time is recorded.

The child shares no CPU time with the benchmark's process, which listens for the commits and
must see them as they happen.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import resource
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from tests.bench.rawamqp import PublishError, RawPublisher, publish_frames
from worker import constants as C

TICK_S = 0.0005        # shortest sleep between two writes: a few messages a write at 15k/s
START_DELAY_S = 0.05   # from the end of encoding to the first message
CHUNK = 500            # messages a write when publishing as fast as possible
MAX_UNCONFIRMED = 20_000
CONFIRM_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Plan:
    ids: list[str]
    bodies: list[bytes]
    rate: float | None  # messages/s; None: as fast as the broker takes them


@dataclass(frozen=True)
class Sent:
    start_at: float           # wall time (time.time()) the schedule starts
    times: array[float]       # each message's send time (wall time), type 'd'
    confirmed: int
    nacked: int
    error: str | None
    cpu_s: float              # the child's CPU time for this plan, encoding excluded

    def lag(self, rate: float) -> list[float]:
        """Each message's send time minus its scheduled time, in seconds."""
        return [t - (self.start_at + i / rate) for i, t in enumerate(self.times)]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _run(publisher: RawPublisher, plan: Plan) -> Sent:
    n = len(plan.ids)
    start_at = time.time() + START_DELAY_S  # a first guess, for the headers
    frames = []
    for i, (mid, payload) in enumerate(zip(plan.ids, plan.bodies, strict=True)):
        at = start_at + i / plan.rate if plan.rate else time.time()
        frames.append(publish_frames(C.EXCHANGE, C.ROUTING_UPDATE, payload, mid,
                                     {C.HEADER_TIMESTAMP_MS: int(at * 1000)}))
    start_at = max(start_at, time.time() + START_DELAY_S)
    times = array("d", bytes(8 * n))
    gc.collect()  # what the last plan left; automatic collection is off (see serve)
    first_tag = publisher.sent
    cpu = _cpu()
    while time.time() < start_at:
        time.sleep(min(TICK_S, max(0.0, start_at - time.time())))
    i = 0
    while i < n:
        if plan.rate is None:
            while publisher.sent - publisher.confirmed > MAX_UNCONFIRMED:
                time.sleep(0.001)
            j = min(n, i + CHUNK)
        else:
            now = time.time()
            j = min(n, int((now - start_at) * plan.rate) + 1)
            if j <= i:
                time.sleep(max(TICK_S, start_at + i / plan.rate - now))
                continue
        data = b"".join(frames[i:j])
        t = time.time()
        publisher.send(data, j - i)
        times[i:j] = array("d", [t]) * (j - i)
        i = j
    publisher.wait_confirmed(CONFIRM_DEADLINE_S)
    return Sent(start_at, times, publisher.confirmed - first_tag, publisher.nacked,
                publisher.error, _cpu() - cpu)


def serve(conn: Connection, url: str) -> None:
    """The child: one connection for every plan it is sent, until it is sent None. It
    makes no garbage worth collecting: automatic collection stays off, so that no pass
    delays a message past its schedule."""
    gc.disable()
    publisher = RawPublisher(url)
    try:
        publisher.connect()
        conn.send("ready")
        while (plan := conn.recv()) is not None:
            nacked = publisher.nacked
            sent = _run(publisher, plan)
            conn.send(Sent(sent.start_at, sent.times, sent.confirmed, sent.nacked - nacked,
                           sent.error, sent.cpu_s))
    except (OSError, PublishError) as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        publisher.close()


class Pacer:
    """The parent's side: `publish` a plan and get its send times."""

    def __init__(self, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process: Any = ctx.Process(target=serve, args=(child, url), name="publisher",
                                        daemon=True)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    async def start(self) -> None:
        self.process.start()
        answer = await self._answer()
        if answer != "ready":
            raise PublishError(f"publisher: {answer}")

    async def publish(self, plan: Plan) -> Sent:
        self._conn.send(plan)
        answer = await self._answer()
        if not isinstance(answer, Sent):
            raise PublishError(f"publisher: {answer}")
        return answer

    async def _answer(self) -> Any:
        try:
            return await asyncio.to_thread(self._conn.recv)
        except EOFError:
            raise PublishError(f"the publisher exited {self.process.exitcode}") from None

    async def stop(self) -> None:
        if self.process.is_alive():
            self._conn.send(None)
            await asyncio.to_thread(self.process.join, 10.0)
        if self.process.is_alive():
            self.process.terminate()
            await asyncio.to_thread(self.process.join, 5.0)
