"""Short-lived memory of answers that every request would otherwise ask Postgres for
again: who a token is, and a feed's owner and state. Per replica; an entry is trusted for
`ttl_s` seconds (0: never kept), and this replica forgets it at once when it changes the
row itself. What another replica or a command changes is seen within `ttl_s`."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MAX_ENTRIES = 10_000  # past it the whole cache is dropped: bounded, and simple


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        until, value = found
        if time.monotonic() >= until:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
