"""The worker's error vocabulary: transient (retry later) vs permanent (fail now).

Third-party errors (asyncpg, aiohttp, aio-pika) are converted into these where they are
called, so the rest of the code speaks one language. Messages never contain secrets.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error the worker raises on purpose."""


class ConfigError(WorkerError):
    """The environment or the command line is wrong."""


class TransientError(WorkerError):
    """May succeed when tried again later (network, broker, database restarts)."""


class PermanentError(WorkerError):
    """Will fail the same way again: bad input, bad feed settings."""


class BadMessage(PermanentError):
    """A message that cannot be processed: dead-lettered with this reason."""


class FeedError(PermanentError):
    """A feed's file or settings make its run fail (the reason lands in feed_runs.error)."""


class SourceError(FeedError):
    """The feed's file could not be downloaded (HTTP status, refused, timeout, too big)."""


class TransientSourceError(SourceError, TransientError):
    """A download failure that may pass (timeouts, 5xx, refused connections); a server's
    Retry-After, when it gave one, in seconds."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(FeedError):
    """A download or a run took longer than its deadline, or a download ran too slowly."""


class LeaseLost(WorkerError):
    """Another replica took the run over; this one must stop without writing."""


class NotModified(WorkerError):
    """The feed's file is the one the last succeeded pull read (cache_imports)."""


class Held(WorkerError):
    """The cleanup circuit breaker held a pull: nothing was applied (force applies it)."""
