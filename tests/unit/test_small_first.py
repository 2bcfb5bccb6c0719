"""runner.SmallFirst: a large run's pauses while small runs are in flight."""

from __future__ import annotations

import asyncio

import pytest

from worker import runner
from worker.envelope import _Extending
from worker.runner import SmallFirst


async def test_no_pause_without_a_small_run() -> None:
    lanes = SmallFirst(0.25)
    assert await lanes.pause(5.0) == 0.0
    with lanes.small():
        pass
    assert lanes.running == 0
    assert await lanes.pause(5.0) == 0.0


async def test_a_share_of_one_never_pauses() -> None:
    lanes = SmallFirst(1.0)
    with lanes.small():
        assert await lanes.pause(5.0) == 0.0


async def test_the_pause_keeps_the_large_runs_share() -> None:
    # worked 40 ms at a share of a half: it pauses 40 ms more, the small run still going
    lanes = SmallFirst(0.5)
    with lanes.small():
        paused = await lanes.pause(0.04)
    assert 0.04 <= paused < 0.5


async def _still(task: asyncio.Future[float], for_s: float) -> bool:
    """Whether the pause is still under way after `for_s` (it ends sooner if it is over)."""
    done, _ = await asyncio.wait({task}, timeout=for_s)
    return not done


async def test_the_pause_ends_when_the_last_small_run_ends() -> None:
    lanes = SmallFirst(0.25)
    first, second = lanes.small(), lanes.small()
    first.__enter__()
    second.__enter__()
    pausing = asyncio.ensure_future(lanes.pause(10.0))  # up to MAX_PAUSE_S
    assert await _still(pausing, runner.IDLE_S)
    first.__exit__(None, None, None)
    assert await _still(pausing, runner.IDLE_S * 3)  # one small run still in flight
    second.__exit__(None, None, None)
    paused = await asyncio.wait_for(pausing, runner.MAX_PAUSE_S / 2)
    assert paused < runner.MAX_PAUSE_S / 2


async def test_a_small_run_claimed_right_after_the_last_keeps_the_pause() -> None:
    lanes = SmallFirst(0.25)
    first = lanes.small()
    first.__enter__()
    pausing = asyncio.ensure_future(lanes.pause(10.0))  # up to MAX_PAUSE_S
    assert await _still(pausing, runner.IDLE_S)
    first.__exit__(None, None, None)
    with lanes.small():  # the next one, within IDLE_S
        assert await _still(pausing, runner.IDLE_S * 3)  # a small run is in flight
    paused = await asyncio.wait_for(pausing, runner.MAX_PAUSE_S / 2)
    assert runner.IDLE_S * 4 <= paused < runner.MAX_PAUSE_S


async def test_a_pause_is_never_longer_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "MAX_PAUSE_S", 0.05)
    lanes = SmallFirst(0.01)
    with lanes.small():
        paused = await lanes.pause(100.0)
    assert 0.05 <= paused < 0.5


async def test_a_runs_overlapping_pauses_count_once_and_move_its_deadline() -> None:
    # The parser pauses 0.3 s and the COPY 0.1 s within it (from 0.05 s on): 0.3 s
    # paused, counted once, and the run's deadline moved on by as much.
    lanes = SmallFirst(0.5)
    with lanes.small():
        async with asyncio.timeout(30) as limit:
            turns = _Extending(lanes, limit)
            before = limit.when()
            assert before is not None
            parser = asyncio.ensure_future(turns.pause(0.3))
            assert await _still(parser, 0.05)
            copy = await turns.pause(0.1)
            counted = copy + await parser
            moved = (limit.when() or 0.0) - before
    assert copy == 0.0  # over while the parser still paused
    assert 0.3 <= counted < 0.38
    assert moved == pytest.approx(counted)
