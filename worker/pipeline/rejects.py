"""Rejects of a run: every one counted, the first few thousand kept with their text."""

from __future__ import annotations

from worker.model import StoredReject


class RejectSink:
    def __init__(self, keep: int, raw_chars: int) -> None:
        self.count = 0
        self.kept: list[StoredReject] = []
        self._keep = keep
        self._raw_chars = raw_chars

    def add(self, position: int, raw: str, reason: str, message_id: str | None = None) -> None:
        self.count += 1
        if len(self.kept) < self._keep:
            if len(raw) > self._raw_chars:
                raw = raw[: self._raw_chars] + "..."
            self.kept.append(StoredReject(position, raw, reason, message_id))

    def clear(self) -> None:
        self.count = 0
        self.kept = []

    def first(self) -> str:
        if not self.kept:
            return ""
        r = self.kept[0]
        return f"position {r.position}: {r.reason}"

    def take(self, other: RejectSink, prefix: str) -> None:
        """Another file's rejects (a feed's second file), their reasons prefixed."""
        for r in other.kept:
            self.add(r.position, r.raw, prefix + r.reason, r.message_id)
        self.count += other.count - len(other.kept)
