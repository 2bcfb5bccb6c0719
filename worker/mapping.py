"""Feed records -> rows for the staging table (COPY text format), or rejects with a reason.

A feed's `mapping.fields` (parsed and checked by worker/feedmapping.py) names, for each
target attribute (the reference's camelCase names), the source column: a header name or a
0-based index. Targets it does not name are
found by the template's column names (external_id, vendor_sku, qty, ...) whatever their
case. Only the attributes a feed maps are written: the others keep their stored values.

Work is done a column at a time: a whole column of a batch is checked with one regular
expression over its joined values, and only a column that fails that check is converted
value by value (where rejects come from). Clean feeds never pay per-value Python calls.
The feed's value rules (worker/rules.py) then run on the converted columns, and the
quantity rule's sum reads its source columns the same way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import orjson

from worker import columnar, values
from worker.columns import (
    SEP,
    Rule,
    check_controls,
    copy_text,
    fast_quantity,
    mapped_through,
    rule_for,
)
from worker.direct import DirectRows
from worker.errors import FeedError
from worker.feedmapping import missing_external_id, show_header, sum_field
from worker.fingerprints import Fingerprints
from worker.model import ATTRIBUTES, COLUMN_BIT, EXTRA_ATTRIBUTES, FeedMapping
from worker.rowshape import column_of, shaper_for
from worker.rules import Applier

# Other header spellings that map by themselves (compared normalised, see _norm).
ALIASES: dict[str, str] = {"qty": "inventoryQuantity", "quantity": "inventoryQuantity",
                           "sku": "vendorSku", "title": "name"}

PRICES = ("retail_price", "cost_price", "compare_at_price")
_HAS_CODE = re.compile("[A-Z]{3}\\s*(?:\x1f|$)")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


_AUTO: dict[str, str] = {_norm(a): a for a in (*ATTRIBUTES, *EXTRA_ATTRIBUTES)}
_AUTO.update(ALIASES)


@dataclass
class Reject:
    position: int
    raw: str
    reason: str


@dataclass
class MappedBatch:
    text: str = ""   # COPY text format, in the order of Mapper.columns
    count: int = 0
    rejects: list[Reject] = field(default_factory=list)


_POSITIONED = "{}\t{}\n"
_POSITIONED_BLANK = "{}\t{}\t\n"  # ... with an empty currency field
_FINGERPRINTED = "{}\t{}\t{}\n"  # position, columns, fingerprint


class Mapper:
    """Turns parsed CSV rows into staging rows; built once per run from header + mapping."""

    def __init__(self, mapping: FeedMapping, header: Sequence[str] | None,
                 decimal_notation: str = "decimal", delimiter: str = ",",
                 positions: bool = False) -> None:
        self.delimiter = delimiter
        self.positions = positions  # each row's text starts with its line number ("pos")
        self.width = len(header) if header is not None else None
        targets = _resolve(mapping, header)
        if "externalId" not in targets:
            raise FeedError(missing_external_id(header))
        value_maps = mapping.values
        # The value rules; a quantity sum's sources replace any inventoryQuantity column.
        self.applier = Applier(mapping.rules) if mapping.rules else None
        self._sum: list[Rule] = []
        self._sum_names: list[str] = []
        quantity_rule = mapping.rules.quantity
        if quantity_rule is not None and quantity_rule.sources:
            targets.pop("inventoryQuantity", None)
            self._sum_names = [name for name, _ in quantity_rule.sources]
            self._sum = [_sum_source(name, _sum_column(name, src, header),
                                     value_maps.get("inventoryQuantity"), decimal_notation)
                         for name, src in quantity_rule.sources]
        self._sum_mapped = "inventoryQuantity" in value_maps  # the sources' values too
        self._locations = bool(self._sum) and bool(quantity_rule and quantity_rule.locations)
        self.source = dict(targets)
        self.ext_index = targets["externalId"]
        rules: list[Rule] = []
        self._extra: list[tuple[str, int]] = []
        for attr, index in targets.items():
            if attr in EXTRA_ATTRIBUTES:
                self._extra.append((attr, index))
                continue
            rule = rule_for(attr, index, decimal_notation)
            if attr in value_maps:  # mapped values go value by value
                rule = Rule(attr, index, mapped_through(value_maps[attr], rule.convert),
                             blank_is_null=False)
            rules.append(rule)
        # Columns go to COPY in file order: a file whose every column is mapped is sent
        # without being taken apart and put together again.
        self._rules = sorted(rules, key=lambda r: r.index)
        self.columns = [ATTRIBUTES[r.attr] for r in self._rules]  # COPY's column list
        if self._sum:
            self.columns.append("inventory_quantity")
        if self._extra or self._locations:
            self.columns.append("extra")
        # Prices may carry their currency ('105.29 USD'): kept as the item's currency, in
        # a column of its own unless the feed maps one; a mapped currency column's value
        # wins, and where it is blank the prices' code fills in.
        priced = [j for j, r in enumerate(self._rules) if ATTRIBUTES[r.attr] in PRICES]
        self._currency_at = next((j for j, r in enumerate(self._rules)
                                  if r.attr == "currency"), None)
        self._priced = priced if self._currency_at is None else []
        self._fill = priced if self._currency_at is not None else []
        if self._priced:
            self.columns.append("currency")
        self.mask = sum(COLUMN_BIT[c] for c in self.columns if c != "external_id")
        self._key_at = self.columns.index("external_id")
        # A pull's: each staged row then ends with its fingerprint (worker/fingerprints.py),
        # and the rows it finds unchanged are left out.
        self.fingerprints: Fingerprints | None = None
        # A first import's: rows go straight into the items table (worker/direct.py).
        self.direct: DirectRows | None = None
        self._needed = ([r.index for r in self._rules] + [i for _, i in self._extra]
                        + [r.index for r in self._sum])
        self._pick = itemgetter(*self._needed)
        self._whole_rows = header is not None and self._needed == list(range(len(header)))
        self._min_width = max(self._needed) + 1
        # Records with a value, per attribute (the run's details.matched): counted a
        # column of a batch at a time, before conversion.
        self._counted = ([r.attr for r in self._rules] + [a for a, _ in self._extra]
                         + [r.attr for r in self._sum])
        self.matched = dict.fromkeys(self._counted, 0)
        self.records = 0  # records counted (well-formed ones, skipped ones aside)
        # A preset's rows that lean on each other (rowshape.py); skips counted by reason.
        self._shaper = shaper_for(mapping, header, self._needed, self._counted,
                                  self.ext_index)
        self.skipped: dict[str, int] = self._shaper.skipped if self._shaper else {}

    @property
    def sources(self) -> frozenset[int]:
        """The columns of a record this mapping reads."""
        return frozenset(self._needed)

    def map(self, rows: list[list[str]], lines: Sequence[int]) -> MappedBatch:
        out = MappedBatch()
        rows, lines = self._well_formed(rows, lines, out.rejects)
        if self._shaper is not None:
            rows, lines = self._shaper.skip(rows, lines)
        if not rows:
            return out
        picked: Sequence[Sequence[str]]
        if self._whole_rows:
            picked = rows
        elif len(self._needed) == 1:
            picked = [[v] for v in map(self._pick, rows)]
        else:
            picked = list(map(self._pick, rows))
        cols: list[Sequence[str]] = list(zip(*picked, strict=True))
        shaped = self._shaper is not None and self._shaper.shape(rows, cols)
        matched = self.matched
        for attr, col in zip(self._counted, cols, strict=True):
            matched[attr] += len(col) - col.count("")
        self.records += len(rows)
        bad: dict[int, str] = {}
        changed = bool(self._extra) or bool(self._sum) or shaped
        applier = self.applier
        # Control characters: one look at the whole batch; columns that have one are
        # checked value by value (the fast paths, which join values with SEP, never see
        # them).
        controls = values.has_controls("".join(map("".join, cols if shaped else picked)))
        codes = self._currencies(cols, self._priced) if self._priced else None
        fill = self._currencies(cols, self._fill) if self._fill else None
        for j, rule in enumerate(self._rules):
            col = cols[j]
            new = self._convert(rule, col, bad, controls)
            if applier is not None:
                new = _apply(applier, rule.attr, new, bad)
            if new is not col:
                cols[j] = new
                changed = True
        if fill is not None and self._currency_at is not None:
            at = self._currency_at
            cols[at] = [v or code for v, code in zip(cols[at], fill, strict=True)]
            changed = True
        n_rules = len(self._rules)
        places: list[dict[str, int]] | None = None
        if self._sum and applier is not None:
            first = n_rules + len(self._extra)
            # Sources of plain digits are read as numbers at once (the usual case);
            # others are converted first, as a quantity column is.
            parsed = [] if self._sum_mapped else list(map(columnar.plain, cols[first:]))
            sources = (cols[first:] if parsed and all(a is not None for a in parsed) else
                       [self._convert(r, cols[first + k], bad, controls)
                        for k, r in enumerate(self._sum)])
            del cols[first:]
            total, places = applier.quantity_sum(sources, self._sum_names, bad, parsed)
        if self._extra and controls:
            for (attr, _), col in zip(self._extra, cols[n_rules:], strict=True):
                check_controls(attr, col, bad)
        if self._extra or places is not None:
            cols[n_rules:] = [self._extras(cols[n_rules:], places)]
        if self._sum:
            cols.insert(n_rules, total)
        if codes is not None:
            cols.append(codes)
            changed = True
        elif self._priced:
            cols.append([""] * len(cols[0]))  # no currency in this batch
        for j, col in enumerate(cols):
            escaped = copy_text(col)
            if escaped is not col:
                cols[j] = escaped
                changed = True
        if bad:
            keep = [i for i in range(len(rows)) if i not in bad]
            for i in sorted(bad):
                out.rejects.append(Reject(lines[i], self._raw(rows[i]), bad[i]))
            out.rejects.sort(key=lambda r: r.position)
            cols = [[c[i] for i in keep] for c in cols]
            changed = True
        out.count = len(cols[0])
        if not out.count:
            return out
        if self.positions:
            kept = [lines[i] for i in keep] if bad else lines
            if self.fingerprints is not None:
                out.text = self._fingerprinted(cols, picked, changed, kept)
            elif changed:
                out.text = "".join(map(_POSITIONED.format, kept,
                                       map("\t".join, zip(*cols, strict=True))))
            elif self._priced:
                out.text = "".join(map(_POSITIONED_BLANK.format, kept, map("\t".join, picked)))
            else:
                out.text = "".join(map(_POSITIONED.format, kept, map("\t".join, picked)))
        elif changed:
            out.text = "\n".join(map("\t".join, zip(*cols, strict=True))) + "\n"
        elif self._priced:  # no currency in this batch: an empty last field on every row
            out.text = "\t\n".join(map("\t".join, picked)) + "\t\n"
        else:
            out.text = "\n".join(map("\t".join, picked)) + "\n"
        return out

    def _fingerprinted(self, cols: list[Sequence[str]], picked: Sequence[Sequence[str]],
                       changed: bool, lines: Sequence[int]) -> str:
        """The rows' COPY text with their fingerprints, without the rows found unchanged."""
        assert self.fingerprints is not None
        if changed:
            bodies = list(map("\t".join, zip(*cols, strict=True)))
        elif self._priced:  # the empty currency field, as the other batches' text has it
            bodies = [b + "\t" for b in map("\t".join, picked)]
        else:
            bodies = list(map("\t".join, picked))
        kept, fps = self.fingerprints.take(bodies, cols[self._key_at])
        direct = self.direct
        if direct is not None and direct.take(cols[self._key_at]):
            return "".join(map(direct.row, direct.bodies(cols, bodies), fps))
        if kept is not None:
            lines = [lines[i] for i in kept]
            bodies = [bodies[i] for i in kept]
        return "".join(map(_FINGERPRINTED.format, lines, bodies, fps))

    def mask_without(self, attrs: Collection[str]) -> int:
        """The merge's mask without the columns that only `attrs` fill: the stored values
        of those stay."""
        drop = {ATTRIBUTES[a] for a in attrs if a in ATTRIBUTES}
        extras = [a for a, _ in self._extra]
        if extras and all(a in attrs for a in extras):
            drop.add("extra")
        prices = self._priced or self._fill
        if prices and not all(self._rules[j].attr in attrs for j in prices):
            drop.discard("currency")  # the prices' own codes fill it
        elif self._priced:
            drop.add("currency")  # the prices' own codes: none without prices
        return self.mask & ~sum(COLUMN_BIT[c] for c in drop if c in COLUMN_BIT)

    def _currencies(self, cols: list[Sequence[str]], priced: list[int]) -> list[str] | None:
        """Each row's currency code, from the first of its prices that has one; None when
        no price of the batch has one (the common case, checked a column at a time)."""
        found: list[str] | None = None
        for j in priced:
            col = cols[j]
            if not _HAS_CODE.search(SEP.join(col)):
                continue
            if found is None:
                found = [""] * len(col)
            for i, v in enumerate(col):
                if not found[i]:
                    found[i] = values.split_currency(v)[1] or ""
        return found

    def _well_formed(self, rows: list[list[str]], lines: Sequence[int],
                     rejects: list[Reject]) -> tuple[list[list[str]], Sequence[int]]:
        """Rows of the right width; blank lines dropped, others rejected."""
        width = self.width
        widths = set(map(len, rows))
        if width is not None and widths == {width}:
            return rows, lines
        if width is None and min(widths, default=0) >= self._min_width:
            return rows, lines
        good_rows: list[list[str]] = []
        good_lines: list[int] = []
        for row, line in zip(rows, lines, strict=True):
            n = len(row)
            if n == 0:  # a blank line
                continue
            if width is not None and n != width:
                rejects.append(Reject(line, self._raw(row),
                                      f"expected {width} columns, found {n}"))
            elif width is None and n < self._min_width:
                rejects.append(Reject(line, self._raw(row),
                                      f"row has {n} columns; the mapping reads column "
                                      f"{self._min_width - 1}"))
            else:
                good_rows.append(row)
                good_lines.append(line)
        return good_rows, good_lines

    @staticmethod
    def _convert(rule: Rule, col: Sequence[str], bad: dict[int, str],
                 controls: bool) -> Sequence[str]:
        if controls and not check_controls(rule.attr, col, bad):
            controls = False
        if rule.fast is not None and not controls:
            done = rule.fast(col)
            if done is not None:
                return done
        if rule.blank_is_null and not controls and not any(col):
            return col  # no values at all: an attribute these records lack
        out: list[str] = []
        append = out.append
        convert = rule.convert
        for i, v in enumerate(col):
            if i in bad and controls:  # a control character, found above
                append("")
                continue
            try:
                append(convert(v) or "")
            except ValueError as exc:
                bad.setdefault(i, str(exc))
                append("")
        return out

    def _extras(self, cols: Sequence[Sequence[str]],
                places: list[dict[str, int]] | None = None) -> list[str]:
        """The extra attributes of each row as JSON; with the quantity rule's locations,
        each row's quantities by location under `locations`."""
        names = [a for a, _ in self._extra]
        rows = [{a: v for a, v in zip(names, vals, strict=True) if v}
                for vals in zip(*cols, strict=True)] if names else [{} for _ in places or ()]
        if places is not None:
            for extra, where in zip(rows, places, strict=True):
                if where:
                    extra["locations"] = where
        return [orjson.dumps(extra).decode() for extra in rows]

    def _raw(self, row: Sequence[str]) -> str:
        return self.delimiter.join(row)


def _sum_source(name: str, index: int, value_map: Mapping[str, str] | None,
                decimal_notation: str) -> Rule:
    """How one source of the quantity rule's sum is read: as a quantity column is."""
    attr = sum_field(name)
    convert = values.quantity_converter(attr, decimal_notation)
    if value_map is not None:
        return Rule(attr, index, mapped_through(value_map, convert), blank_is_null=False)
    return Rule(attr, index, convert, fast_quantity)


def _sum_column(name: str, src: int | str, header: Sequence[str] | None) -> int:
    """The column of one of the quantity sum's sources, in this header."""
    at = _column(f"quantity.sum {name}", src, header, named=False)
    if at is None:
        raise FeedError(f"mapping.rules.quantity.sum: column {src!r} is not in the header: "
                        f"{show_header(header or [])}")
    return at


def _apply(applier: Applier, attr: str, col: Sequence[str],
           bad: dict[int, str]) -> Sequence[str]:
    """The value rules that concern a converted column of `attr`."""
    if attr == "barcode":
        return applier.barcode(col, bad)
    if attr == "inventoryQuantity":
        return applier.quantity(col)
    return applier.price(attr, col, bad)


def _resolve(mapping: FeedMapping, header: Sequence[str] | None) -> dict[str, int]:
    """target attribute -> column index: the fields (a column a preset names that the
    header lacks is left out), then, unless the mapping turns it off, template names. A
    column may serve two attributes (`externalId: "sku"` and vendorSku by its name)."""
    targets: dict[str, int] = {}
    for attr, src in mapping.fields.items():
        index = _column(attr, src, header, attr not in mapping.optional)
        if index is not None:
            targets[attr] = index
    if header is not None and mapping.auto:
        for i, name in enumerate(header):
            auto = _AUTO.get(_norm(name))
            if auto and auto not in targets and auto not in mapping.fields:
                targets[auto] = i
    return targets


def _column(attr: str, src: int | str, header: Sequence[str] | None,
            named: bool = True) -> int | None:
    """The column of a field checked by parse_mapping, in this header (None: a preset's
    column that the header lacks)."""
    if isinstance(src, int):
        if header is not None and src >= len(header):
            raise FeedError(f"mapping.fields.{attr}: column index {src} is out of range")
        return src
    if header is None:
        raise FeedError(f"mapping.fields.{attr} names column {src!r} but the feed has no "
                        "header row: use a 0-based index")
    if src in header:
        return list(header).index(src)
    folded = [h.strip().lower() for h in header]
    if src.strip().lower() in folded:
        return folded.index(src.strip().lower())
    if not named:
        return column_of(header, src)
    raise FeedError(f"mapped column {src!r} ({attr}) is not in the header: "
                    f"{show_header(header)}")
