"""Waiting on a condition with a deadline: the only way tests synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll(check: Callable[[], Awaitable[T]], *, timeout_s: float,
               every_s: float = 0.05) -> T | None:
    """Poll `check` until it returns something truthy (returned); None after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(every_s)


async def until(check: Callable[[], Awaitable[T]], *, timeout_s: float = 15.0,
                every_s: float = 0.05, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after the deadline."""
    value = await poll(check, timeout_s=timeout_s, every_s=every_s)
    if value is None:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
    return value
