"""The retry policy's backoff, and which failures are worth another try."""

from __future__ import annotations

import random

import asyncpg
import pytest

from worker.errors import BadMessage, DeadlineExceeded, FeedError, TransientSourceError
from worker.retry import Failure, RetryPolicy, classify, describe, retrying


def test_backoff_doubles_up_to_the_cap_with_jitter_inside_each_step() -> None:
    policy = RetryPolicy(attempts=10, base_s=0.5, cap_s=4.0, jitter=0.5)
    rng = random.Random(7)
    for attempt, full in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        assert min(waits) >= full * 0.5
        assert max(waits) <= full
        assert max(waits) - min(waits) > full * 0.3  # drawn, not fixed


def test_no_jitter_is_exact() -> None:
    policy = RetryPolicy(base_s=0.25, cap_s=10.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]


def _pg(sqlstate: str) -> asyncpg.PostgresError:
    cls = asyncpg.PostgresError
    for candidate in asyncpg.exceptions.__dict__.values():
        if isinstance(candidate, type) and issubclass(candidate, cls) and \
                getattr(candidate, "sqlstate", None) == sqlstate:
            cls = candidate
            break
    exc = cls.__new__(cls)
    exc.sqlstate = sqlstate  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(("exc", "kind"), [
    (_pg("57P01"), Failure.UNAVAILABLE),   # terminated backend, fast shutdown
    (_pg("57P03"), Failure.UNAVAILABLE),   # starting up
    (_pg("53300"), Failure.UNAVAILABLE),   # too many connections
    (_pg("08006"), Failure.UNAVAILABLE),   # connection failure
    (_pg("40P01"), Failure.CONTENTION),    # deadlock
    (_pg("40001"), Failure.CONTENTION),    # serialization failure
    (_pg("55P03"), Failure.CONTENTION),    # lock timeout
    (_pg("23505"), Failure.PERMANENT),     # unique violation
    (_pg("22021"), Failure.PERMANENT),     # bad byte sequence
    (_pg("P0001"), Failure.PERMANENT),     # raised by a trigger
    (ConnectionResetError(104, "reset"), Failure.UNAVAILABLE),
    (TimeoutError(), Failure.UNAVAILABLE),
    (asyncpg.InterfaceError("connection is closed"), Failure.UNAVAILABLE),
    (TransientSourceError("HTTP 503"), Failure.UNAVAILABLE),  # a FeedError, yet transient
    (FeedError("no column for externalId"), Failure.PERMANENT),
    (DeadlineExceeded("too slow"), Failure.PERMANENT),
    (BadMessage("not JSON"), Failure.PERMANENT),
    (ValueError("a bug"), Failure.PERMANENT),
])
def test_classify(exc: BaseException, kind: Failure) -> None:
    assert classify(exc) is kind


def test_describe_is_one_line_with_the_class() -> None:
    assert describe(ValueError("a\n  b")) == "ValueError: a b"
    assert describe(TimeoutError()) == "TimeoutError"


async def test_retrying_tries_transient_failures_then_gives_up() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError(111, "refused")
        return "done"

    policy = RetryPolicy(attempts=5, base_s=0.001, cap_s=0.002, jitter=0.0)
    assert await retrying(policy, flaky) == "done"
    assert len(calls) == 3

    async def down() -> None:
        calls.append(1)
        raise ConnectionRefusedError(111, "refused")

    calls.clear()
    with pytest.raises(ConnectionRefusedError):
        await retrying(policy, down)
    assert len(calls) == 5

    async def wrong() -> None:
        calls.append(1)
        raise FeedError("permanent")

    calls.clear()
    with pytest.raises(FeedError):
        await retrying(policy, wrong)
    assert len(calls) == 1
