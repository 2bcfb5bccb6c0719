"""Retry policy as a value, and which failures are worth another try.

Third-party errors are sorted here, where the worker decides whether to try again:
- UNAVAILABLE: the database or the network is not there (connection refused or lost, a
  restart, a terminated backend, too many connections). Good work waits for it: it is
  retried, and held (never dead-lettered) for as long as it lasts.
- CONTENTION: the database refused this transaction but not the next (deadlock,
  serialization failure, lock or statement timeout). Retried a bounded number of times.
- PERMANENT: anything else; trying again gives the same answer.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from worker import logs
from worker.errors import PermanentError, TransientError
from worker.settings import Settings

log = logs.get(__name__)
T = TypeVar("T")


class Failure(enum.Enum):
    UNAVAILABLE = "unavailable"
    CONTENTION = "contention"
    PERMANENT = "permanent"


# SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_UNAVAILABLE_STATES = frozenset({
    "57P01",  # admin_shutdown: pg_terminate_backend, a fast or smart shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now: starting up or shutting down
    "57P05",  # idle_session_timeout
    "53300",  # too_many_connections
    "53400",  # configuration_limit_exceeded
    "58000",  # system_error (an I/O error on the server)
})
_CONTENTION_STATES = frozenset({
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled (statement_timeout, pg_cancel_backend)
    "53200",  # out_of_memory
    "53100",  # disk_full
})


def classify(exc: BaseException) -> Failure:
    """What kind of failure `exc` is (see the module's docstring)."""
    if isinstance(exc, TransientError):  # before PermanentError: a TransientSourceError
        return Failure.UNAVAILABLE        # is a FeedError too
    if isinstance(exc, PermanentError):
        return Failure.PERMANENT
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith("08") or state in _UNAVAILABLE_STATES:
            return Failure.UNAVAILABLE
        if state in _CONTENTION_STATES:
            return Failure.CONTENTION
        return Failure.PERMANENT
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError)):
        # "connection is closed", "cannot perform operation: another operation is in
        # progress" after a lost connection, a pool closing under its user
        return Failure.UNAVAILABLE
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, EOFError)):
        return Failure.UNAVAILABLE
    return Failure.PERMANENT


def describe(exc: BaseException) -> str:
    """The error's class and message, one line (callers mask secrets in URLs)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: try n (from 1) waits about base * 2**(n-1),
    at most cap; `jitter` is the share of each wait drawn at random."""

    attempts: int = 10
    base_s: float = 0.2
    cap_s: float = 10.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        full: float = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        r = (rng or _RNG).random()
        return full * (1 - self.jitter) + full * self.jitter * r

    async def sleep(self, attempt: int) -> None:
        await asyncio.sleep(self.delay(attempt))

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(attempts=settings.retry_attempts, base_s=settings.retry_base_s,
                   cap_s=settings.retry_cap_s, jitter=settings.retry_jitter)


_RNG = random.Random()  # noqa: S311 -- backoff jitter, not a secret


async def retrying(policy: RetryPolicy, action: Callable[[], Awaitable[T]],
                   what: str = "work") -> T:
    """`action()`, tried again with backoff while it fails on a transient error, up to the
    policy's attempts; the last error is raised."""
    attempt = 0
    while True:
        try:
            return await action()
        except Exception as exc:
            attempt += 1
            if classify(exc) is Failure.PERMANENT or attempt >= policy.attempts:
                raise
            log.warning("retry", what=what, attempt=attempt, error=describe(exc))
            await policy.sleep(attempt)
