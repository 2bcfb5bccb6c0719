"""A first import's rows as the items table takes them (worker/direct.py)."""

from __future__ import annotations

import random

import numpy as np

from worker.direct import DirectRows, KeySet


def hashes(values: list[int]) -> np.ndarray:
    return np.asarray(values, np.int64)


def test_the_key_set_finds_every_repeat_exactly() -> None:
    keys = KeySet(cap=64)
    rng = random.Random(7)
    seen: set[int] = set()
    for _ in range(300):
        batch = [rng.randrange(-(2**63), 2**63) for _ in range(rng.randrange(1, 20))]
        if rng.random() < 0.2 and seen:  # one from before
            batch[-1] = rng.choice(sorted(seen))
        repeats = len(set(batch)) < len(batch) or bool(seen & set(batch))
        assert keys.add(hashes(batch)) is not repeats
        if not repeats:
            seen |= set(batch)
    assert len(keys) == len(seen)
    assert all(len(run) <= 64 for run in keys.runs)  # no merge past the cap
    assert len(keys.runs) > 1
    assert all(bool((run[1:] > run[:-1]).all()) for run in keys.runs)  # sorted


def test_a_repeat_within_a_batch_adds_nothing() -> None:
    keys = KeySet()
    assert keys.add(hashes([5, 1, 5])) is False
    assert len(keys) == 0
    assert keys.add(hashes([5, 1])) is True
    assert keys.add(hashes([2, 1])) is False
    assert keys.add(hashes([2])) is True


def test_rows_go_straight_in_until_a_key_repeats() -> None:
    direct = DirectRows(42, ["external_id", "grams", "inventory_policy"], "2026-01-01 00:00:00+00")
    assert direct.columns == ["inventory_feed_id", "external_id", "grams", "inventory_policy",
                              "fingerprint", "inventory_updated_at", "last_fetched_at",
                              "ordered_at"]
    assert direct.take(["a", "b"])
    assert direct.take(["c"])
    assert direct.rows == 3
    assert not direct.spilled
    assert not direct.take(["d", "a"])  # "a" again: this batch and the rest are staged
    assert direct.spilled
    assert not direct.take(["e"])
    assert direct.rows == 3
    assert direct.row("a\t1\ttrack", 9) == ("42\ta\t1\ttrack\t9\tnow\tnow\t"
                                           "2026-01-01 00:00:00+00\n")


def test_blanks_become_the_columns_defaults() -> None:
    direct = DirectRows(1, ["external_id", "grams", "name", "inventory_policy"], "t")
    cols = [("a", "b"), ("", "3"), ("", "x"), ("deny", "")]
    bodies = ["a\t\t\tdeny", "b\t3\tx\t"]
    assert direct.bodies(cols, bodies) == ["a\t0\t\tdeny", "b\t3\tx\ttrack"]
    full = [("a",), ("1",), ("n",), ("deny",)]
    same = ["a\t1\tn\tdeny"]
    assert direct.bodies(full, same) is same
