"""A feed's value rules (`mapping.rules`): price markup, rounding and bounds; quantities
summed from several sources, with a threshold, a buffer and a cap; barcode checks.

worker/ruleparse.py reads the JSON (for feedmapping.parse_mapping) into the typed rules of
worker/model.py. An `Applier` applies them to whole columns of canonical values (the texts
values.py's converters give): the pull mapper hands it a batch's columns, the push path the
columns of a group's items of one feed, so pulls and pushes share one implementation.
Each step runs as a chain of C-level `map` calls over the column (no Python call per
value) where it can; prices use exact decimal arithmetic, never floats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from itertools import repeat
from operator import add, floordiv, ge, mod, mul, ne, neg, sub, truediv

from worker import values
from worker.model import PriceRule, Rules

PRICE_ATTRIBUTES = ("retailPrice", "costPrice", "compareAtPrice")
ROUNDINGS = ("none", ".99", ".95", "0.05")
GTIN_MODES = ("reject", "warn", "off")
GTIN_LENGTHS = frozenset((8, 12, 13, 14))

SEP = "\x1f"
# Prices have at most 15 + 30 digits (values.check_digits): room for them and a markup.
_CTX = Context(prec=80)
_CENT = Decimal("0.01")
_ONE = Decimal(1)
_NICKEL = Decimal("0.05")
_ENDINGS = {".99": Decimal("0.99"), ".95": Decimal("0.95")}
_E_NOTATION = re.compile(r"\s*[+-]?[0-9]*[.,]?[0-9]+[eE][+-]?[0-9]+\s*")
# A GTIN is valid when 3 x (its digits at odd distances from the check digit) + (the
# others, the check digit among them) is a multiple of 10. Padded to 16 digits, those are
# the digits at even and odd indexes: translated to 3d mod 10 and d, each value's 8 + 8
# bytes are added as two 64-bit integers (no byte carries: 8 x 18 < 256) and `% 255` sums
# their bytes (256 = 1 mod 255).
_TIMES3 = bytes((3 * (b - 48)) % 10 if 48 <= b <= 57 else 0 for b in range(256))
_TIMES1 = bytes(b - 48 if 48 <= b <= 57 else 0 for b in range(256))
_TENS = frozenset(range(0, 8 * 18 + 1, 10))
# Prices with exactly two decimals (the usual case), so that the rule can work in cents.
_TWO_DECIMALS = re.compile(r"[0-9]{1,15}\.[0-9]{2}(?:\x1f[0-9]{1,15}\.[0-9]{2})*")


# -- applying ------------------------------------------------------------------------------

class Applier:
    """Applies one feed's rules to columns of canonical values ("" is blank, and stays
    blank); `counts` tallies, per rule, the values it changed or rejected (the run's
    details.rules). Bad values are marked in `bad` (row -> reason), as the mapper does."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.counts: dict[str, int] = {}
        self.price_attributes = frozenset(rules.price.attributes if rules.price else ())
        self._in_cents = rules.price is not None and _cent_exact(rules.price)
        self._within = False  # the last prices are known to be within the digit limits

    def count(self, name: str, n: int) -> None:
        if n:
            self.counts[name] = self.counts.get(name, 0) + n

    # prices

    def price(self, attr: str, col: Sequence[str], bad: dict[int, str]) -> Sequence[str]:
        """The price rule on a column of a price attribute it names; values that grow past
        the digit limits are rejected."""
        if attr not in self.price_attributes:
            return col
        if "" in col:  # blanks stay blank: the rule runs on the others
            filled = [i for i, v in enumerate(col) if v]
            done = self._prices([col[i] for i in filled])
            if done is None:
                return col
            out = list(col)
            for i, v in zip(filled, done, strict=True):
                out[i] = v
        else:
            done = self._prices(col)
            if done is None:
                return col
            out = done
        if not self._within and max(map(len, out), default=0) > values.MAX_INTEGER_DIGITS:
            for i, v in enumerate(out):
                try:
                    values.check_digits(attr, v)
                except ValueError as exc:
                    bad.setdefault(i, str(exc))
                    out[i] = ""
        return out

    def _prices(self, col: Sequence[str]) -> list[str] | None:
        """Markup, then rounding, then the bounds; None when no value changed."""
        if not col:
            return None
        self._within = False
        if self._in_cents:
            joined = SEP.join(col)
            if _TWO_DECIMALS.fullmatch(joined):
                cents = list(map(int, joined.replace(".", "").split(SEP)))
                if min(cents) > 0:  # zero prices: the exact way below keeps them zero
                    return self._cent_prices(cents)
        return self._decimal_prices(col)

    def _decimal_prices(self, col: Sequence[str]) -> list[str] | None:
        """The price rule in exact decimal arithmetic, whatever the values."""
        r = self.rules.price
        assert r is not None
        changed = 0
        with localcontext(_CTX):
            given = list(map(Decimal, col))
            xs = given
            if r.markup_percent is not None or r.markup_amount is not None:
                if r.markup_percent is not None:
                    xs = list(map(mul, xs, repeat(1 + r.markup_percent / 100)))
                if r.markup_amount is not None:
                    xs = list(map(add, xs, repeat(r.markup_amount)))
                    xs = list(map(max, xs, repeat(Decimal(0))))  # never below nothing
                if r.rounding == "none":  # a markup's result, to the cent
                    xs = list(map(Decimal.quantize, xs, repeat(_CENT), repeat(ROUND_HALF_UP)))
                n = sum(map(ne, given, xs))
                self.count("price.markup", n)
                changed += n
            if r.rounding != "none":
                before = xs
                if r.rounding == "0.05":
                    xs = list(map(mul, map(Decimal.quantize, map(truediv, xs, repeat(_NICKEL)),
                                           repeat(_ONE), repeat(ROUND_HALF_UP)),
                                  repeat(_NICKEL)))
                else:
                    # Up to the next amount with these cents (10.00 -> 10.99, 10.99 stays);
                    # a zero price stays zero (x False).
                    end = _ENDINGS[r.rounding]
                    xs = list(map(mul, map(add, map(math.ceil, map(sub, xs, repeat(end))),
                                           repeat(end)), map(bool, xs)))
                n = sum(map(ne, before, xs))
                self.count("price.rounding", n)
                changed += n
            if r.minimum is not None:
                before = xs
                xs = list(map(max, xs, repeat(r.minimum)))
                n = sum(map(ne, before, xs))
                self.count("price.min", n)
                changed += n
            if r.maximum is not None:
                before = xs
                xs = list(map(min, xs, repeat(r.maximum)))
                n = sum(map(ne, before, xs))
                self.count("price.max", n)
                changed += n
            if not changed:
                return None
            return list(map(format, xs, repeat("f")))

    def _cent_prices(self, cents: list[int]) -> list[str] | None:
        """What _decimal_prices gives, in integer arithmetic on whole cents (4 times as
        fast): prices of two decimals above zero, a rule whose amounts are whole cents and
        whose markup amount is not negative (_cent_exact). A value is kept as `x / scale`
        cents, exactly, until rounding makes it whole cents again."""
        r = self.rules.price
        assert r is not None
        changed = 0
        xs, scale = cents, 1
        if r.markup_percent is not None or r.markup_amount is not None:
            num, den = (1 + (r.markup_percent or 0) / 100).as_integer_ratio()
            amount = int((r.markup_amount or 0) * 100)
            xs, scale = list(map(add, map(mul, cents, repeat(num)), repeat(amount * den))), den
            if r.rounding == "none":  # to the cent, half up
                xs = list(map(floordiv, map(add, map(mul, xs, repeat(2)), repeat(scale)),
                              repeat(2 * scale)))
                scale = 1
            if r.rounding != "none" and ((r.markup_percent or 0) > 0
                                         or (r.markup_amount or 0) > 0):
                n = len(cents)  # prices above zero, raised exactly: every one changed
            else:
                n = sum(map(ne, map(mul, cents, repeat(scale)), xs))
            self.count("price.markup", n)
            changed += n
        text: list[str] | None = None
        if r.rounding != "none":
            if r.rounding == "0.05":  # to the nearest 5 cents, half up
                new = list(map(mul, map(floordiv, map(add, map(mul, xs, repeat(2)),
                                                      repeat(5 * scale)), repeat(10 * scale)),
                               repeat(5)))
                n = sum(map(ne, map(mul, new, repeat(scale)), xs))
            else:  # up to the next whole amount plus these cents
                end = 99 if r.rounding == ".99" else 95
                wholes = list(map(neg, map(floordiv, map(sub, repeat(end * scale), xs),
                                           repeat(100 * scale))))
                # unchanged: those that had these cents already
                n = len(xs) - list(map(mod, xs, repeat(100 * scale))).count(end * scale)
                if r.minimum is None and r.maximum is None:  # the text from whole units
                    text = list(map(add, map(str, wholes), repeat(f".{end}")))
                    new = [max(wholes) * 100 + end]  # all that is asked of it below
                else:
                    new = list(map(add, map(mul, wholes, repeat(100)), repeat(end)))
            self.count("price.rounding", n)
            changed += n
            xs, scale = new, 1
        for name, bound, pick in (("price.min", r.minimum, max), ("price.max", r.maximum, min)):
            if bound is not None:
                before = xs
                xs = list(map(pick, xs, repeat(int(bound * 100))))
                n = sum(map(ne, before, xs))
                self.count(name, n)
                changed += n
                text = None
        if not changed:
            return None
        # at most 15 digits before the point (values.check_digits), when the largest has
        self._within = max(xs) < 10 ** (values.MAX_INTEGER_DIGITS + 2) * scale
        if text is None:
            text = list(map(str, map(Decimal.scaleb, map(Decimal, xs), repeat(-2))))
        return text

    # quantities

    def quantity_sum(self, cols: Sequence[Sequence[str]], names: Sequence[str]
                     ) -> tuple[Sequence[str], list[dict[str, int]] | None]:
        """The sources' whole-number columns (one per location of `names`) summed (a blank
        counts as 0; all blank stays blank), with each row's quantities by location when
        the rule keeps them; then the threshold, buffer and cap."""
        r = self.rules.quantity
        assert r is not None
        if not any("" in c for c in cols):
            ints = [list(map(int, c)) for c in cols]
            totals = list(map(str, map(sum, zip(*ints, strict=True))))
            self.count("quantity.sum", len(totals))
            where = (list(map(dict, map(zip, repeat(names), zip(*ints, strict=True))))
                     if r.locations else None)
            return self.quantity(totals), where
        texts: list[str] = []
        places: list[dict[str, int]] = []
        for row in zip(*cols, strict=True):
            got = {n: int(v) for n, v in zip(names, row, strict=True) if v}
            texts.append(str(sum(got.values())) if got else "")
            places.append(got)
        self.count("quantity.sum", len(texts) - texts.count(""))
        return self.quantity(texts), places if r.locations else None

    def quantity(self, col: Sequence[str]) -> Sequence[str]:
        """Below the threshold -> 0, then the buffer subtracted (not below 0), then the cap."""
        r = self.rules.quantity
        if r is None or (r.below is None and r.buffer is None and r.cap is None):
            return col
        if "" in col:
            filled = [i for i, v in enumerate(col) if v]
            done = self._quantities([col[i] for i in filled])
            if done is None:
                return col
            out = list(col)
            for i, v in zip(filled, done, strict=True):
                out[i] = v
            return out
        return self._quantities(col) or col

    def _quantities(self, col: Sequence[str]) -> list[str] | None:
        r = self.rules.quantity
        assert r is not None
        given = list(map(int, col))
        xs = given
        changed = 0
        for name, limit in (("quantity.below", r.below), ("quantity.buffer", r.buffer),
                            ("quantity.cap", r.cap)):
            if limit is None:
                continue
            before = xs
            if name == "quantity.below":
                xs = list(map(mul, xs, map(ge, xs, repeat(limit))))  # x False = 0
            elif name == "quantity.buffer":
                xs = list(map(max, map(sub, xs, repeat(limit)), repeat(0)))
            else:
                xs = list(map(min, xs, repeat(limit)))
            n = sum(map(ne, before, xs))
            self.count(name, n)
            changed += n
        return list(map(str, xs)) if changed else None

    # barcodes

    def barcode(self, col: Sequence[str], bad: dict[int, str]) -> Sequence[str]:
        """E-notation (a spreadsheet's rounding: the digits are lost) is rejected; GTIN
        check digits reject the row or are counted as a warning, as the rule says."""
        r = self.rules.barcode
        if r is None:
            return col
        joined = SEP.join(col)
        if "e" in joined or "E" in joined:
            for i, v in enumerate(col):
                if ("e" in v or "E" in v) and _E_NOTATION.fullmatch(v):
                    if i not in bad:
                        self.count("barcode.e_notation", 1)
                    bad.setdefault(i, f"barcode: {v!r} is in E-notation: a spreadsheet "
                                      "rounded the number and its digits are lost")
        if r.gtin == "off" or _gtins_valid(joined, col):
            return col
        for i, v in enumerate(col):
            if not v or i in bad:
                continue
            why = gtin_problem(v)
            if why is None:
                continue
            if r.gtin == "reject":
                bad[i] = f"barcode: {why}"
                self.count("barcode.gtin", 1)
            else:
                self.count("barcode.gtin_warned", 1)
        return col


def _cent_exact(r: PriceRule) -> bool:
    """Whether the price rule's amounts are whole cents, so that _cent_prices applies."""
    amounts = [d for d in (r.markup_amount, r.minimum, r.maximum) if d is not None]
    return (all((d * 100) == int(d * 100) for d in amounts)
            and (r.markup_amount is None or r.markup_amount >= 0))


def _gtins_valid(joined: str, col: Sequence[str]) -> bool:
    """Whether every value of a column is a valid GTIN-8/12/13/14 or blank, checked with
    C-level operations only (the usual case for a feed with the rule); see _TIMES3."""
    digits = joined.replace(SEP, "")
    if digits and not (digits.isascii() and digits.isdigit()):
        return False
    if not set(map(len, col)) <= {0, *GTIN_LENGTHS}:
        return False
    padded = "".join(map(str.zfill, col, repeat(16))).encode()
    odd_places = memoryview(padded[0::2].translate(_TIMES3)).cast("Q").tolist()
    even_places = memoryview(padded[1::2].translate(_TIMES1)).cast("Q").tolist()
    sums = map(add, odd_places, even_places)
    return set(map(int.__mod__, sums, repeat(255))) <= _TENS


def gtin_problem(v: str) -> str | None:
    """Why `v` is no valid GTIN-8, -12, -13 or -14; None when it is one."""
    if not (v.isascii() and v.isdigit()) or len(v) not in GTIN_LENGTHS:
        return f"{v[:40]!r} is not a GTIN-8, -12, -13 or -14 (8, 12, 13 or 14 digits)"
    body = v[:-1].zfill(13)
    total = sum(int(d) * (3 if k % 2 == 0 else 1) for k, d in enumerate(body))
    check = (10 - total % 10) % 10
    if int(v[-1]) != check:
        return f"{v!r} has a wrong check digit (GTIN-{len(v)}: {check} expected)"
    return None
