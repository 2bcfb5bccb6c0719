"""The daemon's garbage collection: automatic collection off, cycles still collected."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tests.support.wait import until
from worker.gcpause import collect_periodically, gc_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycle(freed: asyncio.Event) -> weakref.finalize[[], None]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.finalize(a, freed.set)


async def test_collector_turns_automatic_collection_off_and_still_frees_cycles() -> None:
    assert gc.isenabled()
    task = asyncio.create_task(collect_periodically(0.05))
    try:
        async def collector_off() -> bool:
            return not gc.isenabled()

        await until(collector_off, timeout_s=5.0, what="the collector to take over")
        assert gc.get_freeze_count() > 0  # what existed at start is left out of passes
        freed = asyncio.Event()
        alive = make_cycle(freed)
        assert alive.alive  # a cycle: reference counting alone does not free it
        await asyncio.wait_for(freed.wait(), 5.0)  # the periodic collection did
        assert not alive.alive
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_gc_paused_restores_the_state_it_found() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # off before: still off (the daemon's collector owns it)
    finally:
        gc.enable()
