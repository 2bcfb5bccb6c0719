"""Columns of canonical number texts as numpy arrays, and back: the value rules' arithmetic
(worker/rules.py) on whole columns at once.

A column is read by joining its values into one string and handing its bytes to numpy,
which finds where each value ends and adds each one's digits times their place values
(one C pass to join, the rest vectorised); a column is written by spelling the digits
out as a matrix and splitting one string. Each is several times as fast as converting
value by value with int() and str() (the rules benchmark shows it). Only plain values
take the fast way: a column with a sign, a blank or a value too long for it is converted
value by value, with the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]

_POW10 = 10 ** np.arange(18, dtype=np.int64)[::-1]  # 10^17 .. 10^0
_PLACES = np.append(_POW10[::-1], 0)  # by place: 10^0 .. 10^17, then 0 for a separator
_DIGITS = 18  # at most, of an int64 this module reads or writes the fast way
_ZERO, _POINT, _SEP = 48, 46, 0x1F
_GTIN_WEIGHTS = np.array((3, 1) * 9, np.uint16)  # by place from the left, units last
SEP = "\x1f"


class _Joined:
    """A column's values joined with SEP, as bytes minus '0', and where each value starts
    and ends; `ok` when every byte is a digit, the separators, and with `cents` a point
    before the last two digits of every value."""

    def __init__(self, col: Sequence[str], cents: bool = False) -> None:
        self.ok = False
        self.cents = cents
        joined = SEP.join(col)
        if not col or not joined.isascii():
            return
        raw = np.frombuffer(joined.encode("ascii"), np.uint8)
        ends = np.flatnonzero(raw == _SEP)
        if len(ends) != len(col) - 1:  # a value holds the separator itself
            return
        self.ends = np.append(ends, len(raw))
        self.starts = np.empty_like(self.ends)
        self.starts[0] = 0
        self.starts[1:] = ends + 1
        self.lengths = self.ends - self.starts
        self.digits = raw - np.uint8(_ZERO)  # other bytes wrap around above 9
        self.digits[ends] = 0
        if cents:
            points = np.flatnonzero(raw == _POINT)
            if not np.array_equal(points, self.ends - 3):
                return
            self.digits[points] = 0
        self.ok = not (self.digits > 9).any()

    def places(self) -> npt.NDArray[np.intp]:
        """Each digit's place in its value (0 for the units; with `cents`, 0 for the
        hundredths), -1 for a separator."""
        n = len(self.digits)
        at = np.repeat(self.ends, self.lengths + 1)[:n] - np.arange(n) - 1
        if self.cents:
            at -= at > 2  # the point's own place is taken by the next digit
        return at

    def numbers(self) -> Ints:
        return np.add.reduceat(self.digits * _PLACES[self.places()], self.starts)


def whole(col: Sequence[str]) -> Ints:
    """Whole numbers (as values.py writes them: digits, perhaps a '-'; no blanks)."""
    xs = plain(col)
    return np.fromiter(map(int, col), np.int64, len(col)) if xs is None else xs


def plain(col: Sequence[str]) -> Ints | None:
    """Whole numbers of digits only; None when a value is blank, has a sign or is longer
    than the fast way reads."""
    j = _Joined(col)
    if j.ok and int(j.lengths.min()) > 0 and int(j.lengths.max()) <= _DIGITS:
        return j.numbers()
    return None


def cents(col: Sequence[str]) -> Ints | None:
    """Prices of exactly two decimals ('12.30') as whole cents; None when a value has
    another shape."""
    j = _Joined(col, cents=True)
    if not j.ok or int(j.lengths.max()) > _DIGITS + 1:
        return None
    return j.numbers()


def gtin_sums(col: Sequence[str], lengths: Sequence[int]) -> Ints | None:
    """Each value's digits at odd places (counting the units as 0) times 3, plus the
    others: a GTIN is valid when its sum is a multiple of 10; a blank sums to 0. None
    when a value has another character than a digit or another length than `lengths`
    (or blank). Values this short are read as a matrix of digits padded to the longest
    length: less to move than the joined bytes' running sums."""
    if not col or not set(map(len, col)) <= {0, *lengths}:
        return None
    width = max(lengths)
    padded = "".join(map(str.zfill, col, repeat(width)))
    if not padded.isascii():
        return None
    digits = np.frombuffer(padded.encode("ascii"), np.uint8).reshape(len(col), width)
    digits = digits - np.uint8(_ZERO)
    if (digits > 9).any():
        return None
    sums: Ints = (digits @ _GTIN_WEIGHTS[-width:]).astype(np.int64)
    return sums


def texts(xs: Ints, decimals: int = 0) -> list[str]:
    """The numbers' texts; with `decimals`, xs are in units of 10^-decimals ('1234' with
    2 -> '12.34')."""
    if not len(xs):
        return []
    top, bottom = int(xs.max()), int(xs.min())
    if bottom < 0 or top >= 10 ** _DIGITS:
        return _slow_texts(xs.tolist(), decimals)
    width = max(len(str(top)), decimals + 1)  # digits
    units = width - decimals  # digits before the point
    digits = (xs[:, None] // _POW10[-width:]) % 10
    shape = (len(xs), width + (1 if decimals else 0) + 1)  # ... a point, a separator
    chars = np.empty(shape, np.uint8)
    keep = np.ones(shape, bool)
    chars[:, :units] = digits[:, :units] + _ZERO
    # leading zeros left out: a digit is kept from the first that is not 0, or the units
    np.logical_or.accumulate(digits[:, :units] != 0, axis=1, out=keep[:, :units])
    keep[:, units - 1] = True
    if decimals:
        chars[:, units] = _POINT
        chars[:, units + 1:-1] = digits[:, units:] + _ZERO
    chars[:, -1] = _SEP
    return chars[keep].tobytes().decode("ascii")[:-1].split(SEP)


def _slow_texts(xs: list[int], decimals: int) -> list[str]:
    if not decimals:
        return list(map(str, xs))
    scale = 10 ** decimals
    return [f"{'-' if x < 0 else ''}{abs(x) // scale}.{abs(x) % scale:0{decimals}d}"
            for x in xs]
