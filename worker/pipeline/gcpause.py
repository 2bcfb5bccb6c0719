"""Pausing the cyclic garbage collector around CPU-bound batch work."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing a chunk or folding a batch makes thousands of short-lived containers and no
    cycles: the collector's passes over them cost more than the work itself (measured: about
    30% of a pull's parsing). Reference counting still frees everything at once."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
