"""The coalescer: calls made while a write runs share the next write; a failure reaches
every caller of its write and no other."""

from __future__ import annotations

import asyncio

import pytest

from worker.coalesce import Coalescer


async def test_a_lone_call_is_written_at_once_and_later_ones_share_the_next_write() -> None:
    writes: list[list[int]] = []
    gate, started = asyncio.Event(), asyncio.Event()

    async def write(items: list[int]) -> None:
        writes.append(items)
        started.set()
        if len(writes) == 1:
            await gate.wait()

    c = Coalescer(write)
    first = asyncio.create_task(c.add(1))
    await asyncio.wait_for(started.wait(), 5)
    later = [asyncio.create_task(c.add(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert not first.done()
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 5)
    assert writes == [[1], [2, 3, 4]]
    assert c.writes == 2
    await c.close()


async def test_max_items_splits_a_burst() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        writes.append(items)

    c = Coalescer(write, max_items=2)
    await asyncio.gather(*(c.add(n) for n in range(5)))
    assert writes == [[0, 1], [2, 3], [4]]


async def test_a_failed_write_fails_its_callers_only() -> None:
    async def write(items: list[int]) -> None:
        if 0 in items:
            raise ConnectionError("database away")

    c = Coalescer(write, max_items=2)
    got = await asyncio.gather(*(c.add(n) for n in range(4)), return_exceptions=True)
    assert [type(g) for g in got] == [ConnectionError, ConnectionError, type(None), type(None)]
    await c.add(7)  # the coalescer goes on after a failure
    assert c.writes == 2


async def test_a_caller_cancelled_does_not_cancel_the_write() -> None:
    written: list[int] = []
    gate = asyncio.Event()

    async def write(items: list[int]) -> None:
        await gate.wait()
        written.extend(items)

    c = Coalescer(write)
    t = asyncio.create_task(c.add(1))
    other = asyncio.create_task(c.add(2))
    await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    gate.set()
    await asyncio.wait_for(other, 5)
    assert written == [1, 2]
