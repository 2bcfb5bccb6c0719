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


class Unavailable(TransientError):
    """Postgres or RabbitMQ does not answer (a connection could not be made)."""


class PermanentError(WorkerError):
    """Will fail the same way again: bad input, bad feed settings."""


# Why a message was dead-lettered, in a few words: the label of
# feed_worker_dead_letters_total (a fixed set, so the metric's series stay few).
DEAD_NOT_JSON = "not_json"            # the body is not JSON
DEAD_INVALID = "invalid"              # JSON against the message's schema
DEAD_UNKNOWN_FEED = "unknown_feed"    # its feedId names no feed
DEAD_FEED_DISABLED = "feed_disabled"  # the feed is disabled or its provider archived
DEAD_NOT_PULLABLE = "not_pullable"    # a pull-request for a feed that is not pulled
DEAD_FEED_SETTINGS = "feed_settings"  # the feed's mapping or value rules are not valid
DEAD_REFUSED = "refused_by_database"  # a feed-update the database refused on its own
DEAD_LETTER_REASONS = (DEAD_NOT_JSON, DEAD_INVALID, DEAD_UNKNOWN_FEED, DEAD_FEED_DISABLED,
                       DEAD_NOT_PULLABLE, DEAD_FEED_SETTINGS, DEAD_REFUSED)


class BadMessage(PermanentError):
    """A message that cannot be processed: dead-lettered with this reason; `kind` is one of
    DEAD_LETTER_REASONS."""

    def __init__(self, message: str, kind: str = DEAD_INVALID) -> None:
        super().__init__(message)
        self.kind = kind


class FeedError(PermanentError):
    """A feed's file or settings make its run fail (the reason lands in feed_runs.error)."""


class SourceError(FeedError):
    """The feed's file could not be downloaded (HTTP status, refused, timeout, too big)."""


class NoSuchFile(SourceError):
    """The server says the file is not there (HTTP 404, 410)."""


class TransientSourceError(SourceError, TransientError):
    """A download failure that may pass (timeouts, 5xx, refused connections); a server's
    Retry-After, when it gave one, in seconds."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(FeedError):
    """A download or a run took longer than its deadline, or a download ran too slowly."""


class TruncatedError(TransientSourceError):
    """The download was cut short: the transport said so (Content-Length not met, chunked
    body without its last chunk, fewer bytes than the FTP/SFTP/file size), or, where it
    could not vouch for the length, the document's end did (a CSV without its last line
    break, an XML root element not closed, JSON not closed). Transient: the next try may
    get the whole file. Nothing of the run is written."""

    def __init__(self, received: int, why: str) -> None:
        super().__init__(f"the download was cut short: {received:,} bytes received, {why}")
        self.received, self.why = received, why


class LeaseLost(WorkerError):
    """Another replica took the run over; this one must stop without writing."""


class NotModified(WorkerError):
    """The feed's file is the one the last succeeded pull read (cache_imports)."""


class Held(WorkerError):
    """The cleanup circuit breaker held a pull: nothing was applied (force applies it)."""
