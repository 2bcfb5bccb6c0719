"""Group commit for small writes: the calls made while one write runs go together into
the next (one statement and one commit for the requests of the moment, instead of one
each). A quiet caller is written at once; a busy one shares."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[None]],
                 max_items: int = 1000) -> None:
        self.write = write
        self.max_items = max_items
        self.writes = 0  # writes made (for tests)
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        """Returns once a write holding the item is done (raises what made it fail)."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="coalesce")
        await asyncio.shield(future)  # a caller gone does not cancel the others' write

    async def close(self) -> None:
        """Let the writes waiting finish."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        await asyncio.sleep(0)  # calls made in the same turn of the loop join
        while self._pending:
            batch, self._pending = (self._pending[:self.max_items],
                                    self._pending[self.max_items:])
            try:
                await self.write([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                self.writes += 1
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
