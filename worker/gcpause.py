"""The cyclic garbage collector around CPU-bound batch work, and the daemon's collector."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator

from worker import logs

log = logs.get(__name__)

# Between two full collections of the daemon: rare enough to cost little, often enough
# that memory held by cycles (there are few) is given back.
COLLECT_EVERY_S = 10.0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing a chunk or folding a batch makes thousands of short-lived containers and no
    cycles: the collector's passes over them would cost a good share of the work itself,
    for nothing collected. Reference counting still frees everything at once."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def collect_periodically(interval_s: float = COLLECT_EVERY_S) -> None:
    """The daemon's garbage collection: automatic collection off, one full collection every
    `interval_s`. The daemon's work makes no cycles worth collecting sooner (reference
    counting frees its batches), but automatic collection would run after every push
    group, over that group's live items, for nothing collected. What was there at start
    is frozen out of the passes."""
    gc.freeze()
    gc.disable()
    try:
        while True:
            await asyncio.sleep(interval_s)
            found = gc.collect()
            if found:
                log.debug("gc.collected", objects=found)
    finally:
        gc.enable()
        gc.unfreeze()
