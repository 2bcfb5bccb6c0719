"""Per-token rate limit of the synchronous route: a token bucket per token, in this
replica's memory (N replicas behind a balancer allow up to N times the rate)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    rate_per_s: float
    burst: int
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)  # tokens, at

    def take(self, key: int, now: float | None = None) -> float:
        """0 when a request may go now (one token taken), else seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate_per_s
