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
from operator import add, mul, ne, sub, truediv

import numpy as np

from worker import columnar, values
from worker.model import PriceRule, Rules

PRICE_ATTRIBUTES = ("retailPrice", "costPrice", "compareAtPrice")
ROUNDINGS = ("none", ".99", ".95", "0.05")
GTIN_MODES = ("reject", "warn", "off")
GTIN_LENGTHS = frozenset((8, 12, 13, 14))
_GTIN_LENGTHS = sorted(GTIN_LENGTHS)

SEP = "\x1f"
# Prices have at most 15 + 30 digits (values.check_digits): room for them and a markup.
_CTX = Context(prec=80)
_CENT = Decimal("0.01")
_ONE = Decimal(1)
_NICKEL = Decimal("0.05")
_ENDINGS = {".99": Decimal("0.99"), ".95": Decimal("0.95")}
_E_NOTATION = re.compile(r"\s*[+-]?[0-9]*[.,]?[0-9]+[eE][+-]?[0-9]+\s*")

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
        self._ratio = (1, 1, 0)  # the markup as num / den, its amount in cents
        if rules.price is not None and self._in_cents:
            num, den = (1 + (rules.price.markup_percent or 0) / 100).as_integer_ratio()
            self._ratio = (num, den, int((rules.price.markup_amount or 0) * 100))
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
            cs = columnar.cents(col)
            if cs is not None and int(cs.min()) > 0 and self._cents_fit(int(cs.max())):
                return self._cent_prices(cs)  # zero prices: the exact way keeps them zero
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
            for name, bound, pick in (("price.min", r.minimum, max),
                                      ("price.max", r.maximum, min)):
                if bound is not None:
                    before = xs
                    xs = list(map(pick, xs, repeat(bound)))
                    n = sum(map(ne, before, xs))
                    self.count(name, n)
                    changed += n
            if not changed:
                return None
            return list(map(format, xs, repeat("f")))

    def _cents_fit(self, top: int) -> bool:
        """Whether _cent_prices' arithmetic on cents up to `top` stays within int64."""
        num, den, amount = self._ratio
        return (top * max(num, den) + abs(amount) * den + 100 * den) * 4 < 2**63

    def _cent_prices(self, cents: columnar.Ints) -> list[str] | None:
        """What _decimal_prices gives, in integer arithmetic on whole cents, a column at
        a time: prices of two decimals above zero, a rule whose amounts are whole cents
        and whose markup amount is not negative (_cent_exact). A value is kept as
        `x / scale` cents, exactly, until rounding makes it whole cents again."""
        r = self.rules.price
        assert r is not None
        changed = 0
        xs, scale = cents, 1
        if r.markup_percent is not None or r.markup_amount is not None:
            num, den, amount = self._ratio
            xs, scale = cents * num + amount * den, den
            if r.rounding == "none":  # to the cent, half up
                xs, scale = (xs * 2 + scale) // (2 * scale), 1
            if r.rounding != "none" and ((r.markup_percent or 0) > 0
                                         or (r.markup_amount or 0) > 0):
                n = len(cents)  # prices above zero, raised exactly: every one changed
            else:
                n = int(np.count_nonzero(cents * scale != xs))
            self.count("price.markup", n)
            changed += n
        if r.rounding != "none":
            if r.rounding == "0.05":  # to the nearest 5 cents, half up
                new = (xs * 2 + 5 * scale) // (10 * scale) * 5
                n = int(np.count_nonzero(new * scale != xs))
            else:  # up to the next whole amount plus these cents
                end = 99 if r.rounding == ".99" else 95
                new = -((end * scale - xs) // (100 * scale)) * 100 + end
                # unchanged: those that had these cents already
                n = len(xs) - int(np.count_nonzero(xs % (100 * scale) == end * scale))
            self.count("price.rounding", n)
            changed += n
            xs, scale = new, 1
        for name, bound, pick in (("price.min", r.minimum, np.maximum),
                                  ("price.max", r.maximum, np.minimum)):
            if bound is not None:
                before = xs
                xs = pick(xs, int(bound * 100) * scale)
                n = int(np.count_nonzero(before != xs))
                self.count(name, n)
                changed += n
        if not changed:
            return None
        assert scale == 1  # a markup without rounding ends at whole cents, as rounding does
        # at most 15 digits before the point (values.check_digits), when the largest has
        self._within = int(xs.max()) < 10 ** (values.MAX_INTEGER_DIGITS + 2)
        return columnar.texts(xs, 2)

    # quantities

    def quantity_sum(self, cols: Sequence[Sequence[str]], names: Sequence[str],
                     bad: dict[int, str], parsed: Sequence[columnar.Ints | None] = ()
                     ) -> tuple[Sequence[str], list[dict[str, int]] | None]:
        """The sources' whole-number columns (one per location of `names`) summed (a blank
        counts as 0; all blank stays blank), with each row's quantities by location when
        the rule keeps them; then the threshold, buffer and cap. A sum beyond the range of
        a quantity is rejected. `parsed`: the columns' columnar.plain, when known."""
        r = self.rules.quantity
        assert r is not None
        ints = [a for a in (parsed or map(columnar.plain, cols)) if a is not None]
        if len(ints) == len(cols):  # no blanks, no signs (the usual case)
            total = sum(ints[1:], ints[0])
            self.count("quantity.sum", len(total))
            where = (list(map(dict, map(zip, repeat(names),
                                        zip(*(a.tolist() for a in ints), strict=True))))
                     if r.locations else None)
            return self._quantity_texts(total, None, len(total), bad), where
        filled: list[int] = []
        sums: list[int] = []
        places: list[dict[str, int]] = []
        for i, row in enumerate(zip(*cols, strict=True)):
            got = {n: int(v) for n, v in zip(names, row, strict=True) if v}
            if got:
                filled.append(i)
                sums.append(sum(got.values()))
            places.append(got)
        self.count("quantity.sum", len(sums))
        total = np.array(sums, np.int64)
        return (self._quantity_texts(total, filled, len(places), bad),
                places if r.locations else None)

    def _quantity_texts(self, total: columnar.Ints, filled: list[int] | None, rows: int,
                        bad: dict[int, str]) -> list[str]:
        """Sums (of the rows `filled`; None: of every row) through the quantity rules, as
        the texts of `rows` rows, the others blank; a sum out of range is rejected."""
        xs = self._quantities(total)
        if xs is None:
            xs = total
        out = columnar.texts(xs)
        if len(xs) and (int(xs.max()) >= values.INT32 or int(xs.min()) < -values.INT32):
            for k in np.flatnonzero((xs >= values.INT32) | (xs < -values.INT32)).tolist():
                i = k if filled is None else filled[k]
                bad.setdefault(i, f"inventoryQuantity: the sum {out[k]} is out of range")
                out[k] = ""
        if filled is None:
            return out
        spread = [""] * rows
        for i, v in zip(filled, out, strict=True):
            spread[i] = v
        return spread

    def quantity(self, col: Sequence[str]) -> Sequence[str]:
        """Below the threshold -> 0, then the buffer subtracted (not below 0), then the cap."""
        r = self.rules.quantity
        if r is None or (r.below is None and r.buffer is None and r.cap is None):
            return col
        if "" in col:
            filled = [i for i, v in enumerate(col) if v]
            done = self._quantities(columnar.whole([col[i] for i in filled]))
            if done is None:
                return col
            out = list(col)
            for i, v in zip(filled, columnar.texts(done), strict=True):
                out[i] = v
            return out
        done = self._quantities(columnar.whole(col))
        return col if done is None else columnar.texts(done)

    def _quantities(self, given: columnar.Ints) -> columnar.Ints | None:
        r = self.rules.quantity
        assert r is not None
        xs = given
        changed = 0
        for name, limit in (("quantity.below", r.below), ("quantity.buffer", r.buffer),
                            ("quantity.cap", r.cap)):
            if limit is None:
                continue
            before = xs
            if name == "quantity.below":
                xs = np.where(xs < limit, 0, xs)
            elif name == "quantity.buffer":
                xs = np.maximum(xs - limit, 0)
            else:
                xs = np.minimum(xs, limit)
            n = int(np.count_nonzero(before != xs))
            self.count(name, n)
            changed += n
        return xs if changed else None

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
        if r.gtin == "off" or _gtins_valid(col):
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


def _gtins_valid(col: Sequence[str]) -> bool:
    """Whether every value of a column is a valid GTIN-8/12/13/14 or blank, checked a
    column at a time (the usual case for a feed with the rule)."""
    sums = columnar.gtin_sums(col, _GTIN_LENGTHS)
    return sums is not None and not (sums % 10).any()


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
