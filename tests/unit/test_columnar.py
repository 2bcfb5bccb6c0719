"""worker/columnar.py: columns of number texts to numpy arrays and back, the fast way and
the value-by-value way agreeing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from worker import columnar


@pytest.mark.parametrize("col", [
    ["0", "7", "42", "2147483647", "000123"],
    ["-5", "3"],                        # a sign: value by value
    ["123456789012345678", "1"],        # 18 digits: the widest of the fast way
    ["1234567890123456789", "1"],       # 19: value by value
])
def test_whole_numbers(col: list[str]) -> None:
    assert columnar.whole(col).tolist() == [int(v) for v in col]


def test_whole_of_no_values() -> None:
    assert columnar.whole([]).tolist() == []


@pytest.mark.parametrize(("col", "want"), [
    (["12.30", "0.05", "999999999999999.99"], [1230, 5, 99999999999999999]),
    (["0.00", ".50"], [0, 50]),
    (["12.3"], None),                  # one decimal
    (["1.00", "5"], None),             # ... or none
    (["1.0", "0"], None),
    (["12"], None),                    # none
    (["1.234"], None),                 # three
    (["-1.00"], None),                 # a sign
    (["1,00"], None),                  # another point
    (["1.0\u0661"], None),             # a digit, but not ASCII
    (["1234567890123456.00"], [123456789012345600]),
    (["12345678901234567.00"], None),  # 19 digits: past the fast way
    (["1.00\x1f2.00"], None),          # a value holds the separator
    ([], None),
])
def test_cents(col: list[str], want: list[int] | None) -> None:
    got = columnar.cents(col)
    assert (None if got is None else got.tolist()) == want


@pytest.mark.parametrize(("col", "want"), [
    # 4006381333931: 3 x (0+6+8+3+3+3) + (4+0+3+1+3+9+1) = 69 + 21
    (["4006381333931", "", "96385074", "4006381333932"], [90, 0, 90, 91]),
    (["12a"], None),
    (["1\u0662"], None),
    (["4006381333931", "400638133393"], [90, 83]),
    (["4006381333931", "40063813339"], None),  # 11 digits: no GTIN length
    ([], None),
])
def test_gtin_sums(col: list[str], want: list[int] | None) -> None:
    got = columnar.gtin_sums(col, (8, 12, 13, 14))
    assert (None if got is None else got.tolist()) == want


@pytest.mark.parametrize(("xs", "decimals", "want"), [
    ([0, 7, 10, 1234567], 0, ["0", "7", "10", "1234567"]),
    ([0, 5, 99, 100, 123456], 2, ["0.00", "0.05", "0.99", "1.00", "1234.56"]),
    ([-5, 12], 0, ["-5", "12"]),                 # a sign: value by value
    ([-5, 12], 2, ["-0.05", "0.12"]),
    ([10**18, 1], 0, [str(10**18), "1"]),      # past the fast way's width
    ([], 2, []),
])
def test_texts(xs: list[int], decimals: int, want: list[str]) -> None:
    assert columnar.texts(np.array(xs, np.int64), decimals) == want


def test_texts_and_back_agree_with_python() -> None:
    rng = random.Random(7)
    xs = [rng.choice([0, 1, rng.randrange(10**rng.randrange(1, 18))]) for _ in range(5000)]
    arr = np.array(xs, np.int64)
    assert columnar.texts(arr) == list(map(str, xs))
    priced = columnar.texts(arr, 2)
    assert priced == [f"{x // 100}.{x % 100:02d}" for x in xs]
    back = columnar.cents(priced)
    assert back is not None
    assert back.tolist() == xs
    assert columnar.whole(list(map(str, xs))).tolist() == xs
