"""Fingerprints of staged rows, and which rows a refresh leaves out."""

from __future__ import annotations

import numpy as np
import pytest

from worker.fingerprints import Fingerprints, Known, Repeated, overlap, seed

COLUMNS = ["external_id", "name", "inventory_quantity"]
MASK = 0b101


def body(i: int, qty: int = 5) -> str:
    return f"E{i}\tItem {i}\t{qty}"


def key(i: int) -> str:
    return f"E{i}"


def known_of(n: int, unknown: tuple[int, ...] = ()) -> Known:
    """The fingerprints a first pull of rows 0..n-1 stored: item id = 100 + row."""
    _, fps = Fingerprints(COLUMNS, MASK).take([body(i) for i in range(n)],
                                              [key(i) for i in range(n)])
    arr = np.array(fps, np.int64)
    order = np.argsort(arr)
    return Known(arr[order], (np.arange(n) + 100)[order], np.array(unknown, np.int64),
                 n + len(unknown), 5 * n)


def test_the_same_text_has_the_same_fingerprint_and_the_seed_tells_mappings_apart() -> None:
    a = Fingerprints(COLUMNS, MASK).take([body(1), body(1), body(2)], ["E1", "E1", "E2"])
    assert a[0] is None
    assert a[1][0] == a[1][1] != a[1][2]
    assert all(-(2**63) <= f < 2**63 for f in a[1])  # a bigint
    b = Fingerprints(COLUMNS, MASK | 0b10).take([body(1)], ["E1"])
    c = Fingerprints(list(reversed(COLUMNS)), MASK).take([body(1)], ["E1"])
    assert b[1][0] != a[1][0]
    assert c[1][0] != a[1][0]
    assert seed(COLUMNS, MASK) != seed(COLUMNS, 0)


def test_without_known_fingerprints_every_row_is_staged() -> None:
    prints = Fingerprints(COLUMNS, MASK, Known.empty())
    kept, fps = prints.take([body(i) for i in range(5)], [key(i) for i in range(5)])
    assert kept is None
    assert len(fps) == 5
    assert prints.seen() is None


def test_unchanged_rows_are_left_out_and_counted() -> None:
    known = known_of(10, unknown=(7, 8))
    prints = Fingerprints(COLUMNS, MASK, known)
    bodies = [body(i, qty=9 if i in (2, 3) else 5) for i in range(10)] + [body(50)]
    kept, fps = prints.take(bodies, [key(i) for i in range(10)] + ["E50"])
    assert kept == [2, 3, 10]
    assert len(fps) == 3
    seen = prints.seen()
    assert seen is not None
    assert (seen.items, prints.dropped) == (8, 8)
    # the changed items and those without a fingerprint may be missing: the merge reads them
    assert sorted(seen.unseen_ids.tolist()) == [7, 8, 102, 103]


def test_a_key_staged_earlier_is_staged_again_so_that_the_last_row_wins() -> None:
    prints = Fingerprints(COLUMNS, MASK, known_of(10))
    kept, _ = prints.take([body(4, qty=1)], ["E4"])  # changed: staged
    assert kept is None
    kept, _ = prints.take([body(4), body(5)], ["E4", "E5"])  # E4 as stored: staged after all
    assert kept == [0]


def test_a_key_twice_in_one_batch_is_staged_each_time() -> None:
    prints = Fingerprints(COLUMNS, MASK, known_of(10))
    kept, _ = prints.take([body(4), body(5), body(4, qty=1)], ["E4", "E5", "E4"])
    assert kept == [0, 2]


def test_a_key_left_out_and_staged_later_is_counted_once() -> None:
    prints = Fingerprints(COLUMNS, MASK, known_of(10))
    prints.take([body(i) for i in range(10)], [key(i) for i in range(10)])
    kept, _ = prints.take([body(4, qty=0)], ["E4"])
    assert kept is None
    seen = prints.seen()
    assert seen is not None
    assert seen.items == 10
    # the merge matched item 104 (E4) with the staged row: it is not also a left-out one
    assert overlap(seen, [104, 999]) == 1
    assert overlap(seen, []) == 0


def test_a_lookup_finds_what_a_binary_search_finds() -> None:
    """Known.find (buckets of the fingerprints' top bits) against numpy's searchsorted,
    with extreme values, repeats (colliding fingerprints), empty and crowded buckets."""
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 100, 5000):
        fps = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
        fps[: n // 10] = fps[n // 10: 2 * (n // 10)]  # repeats
        if n > 3:
            fps[-3:] = (-(2**63), 2**63 - 1, 0)
            fps[-40:-3] = 12345 + np.arange(37)  # one bucket of many
        fps.sort()
        known = Known(fps, np.arange(n, dtype=np.int64), np.zeros(0, np.int64), n, 0)
        probe = np.concatenate((fps, rng.integers(-(2**63), 2**63 - 1, 2000, dtype=np.int64),
                                fps + 1, fps - 1))
        at, hit = known.find(probe)
        expect_at = np.minimum(np.searchsorted(fps, probe), n - 1)
        expect_hit = fps[expect_at] == probe
        assert (hit == expect_hit).all()
        assert (at[hit] == expect_at[hit]).all()  # the first of equal fingerprints


def test_a_key_staged_again_after_its_segment_raises_when_the_next_segment_closes() -> None:
    known = known_of(100)
    prints = Fingerprints(COLUMNS, MASK, known)
    prints.segmented(True)
    changed = [body(i, qty=9) for i in range(10)]
    prints.take(changed[:5], [key(i) for i in range(5)])
    prints.take([body(0, qty=8)], [key(0)])  # E0 again within its segment: fine
    prints.close_segment()
    prints.take(changed[5:], [key(i) for i in range(5, 10)])
    prints.take([body(50)], [key(50)])  # unchanged: left out, its key never staged
    prints.close_segment()
    prints.take([body(50, qty=1), body(3, qty=7)], [key(50), key(3)])  # E3 was merged
    with pytest.raises(Repeated):
        prints.close_segment()
