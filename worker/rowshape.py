"""A CSV preset's rows made to stand alone before they are mapped (presets.Rows): a row
that only adds an image to its product is skipped and counted; a product's columns, given
on the first row of its group only, are filled down to the group's other rows; a variant
whose quantity is not tracked, and a sale price, are read into the columns the mapping
reads.

The work is done a column of a batch at a time with map, zip and accumulate (C loops),
never a Python call per row: the mapper is a pull's hot path. Batches come in file order;
only the last row's group and filled values are carried to the next, so memory stays flat.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import accumulate, compress, repeat
from operator import getitem, itemgetter, mul, ne, not_, or_, truth
from typing import Any

from worker.model import FeedMapping
from worker.presets import Rows, preset_for

IMAGE_ONLY = "image-only rows"  # the reason skipped rows are counted under (details.skipped)

Getter = Callable[[Sequence[str]], Any]


def _loose(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


def _folded(name: str) -> str:
    return name.strip().lower()


_FOLDS: tuple[Callable[[str], str], ...] = (str, _folded, _loose)


def column_of(header: Sequence[str], name: str) -> int | None:
    """A preset's column in this header: by its name, in any case, or with any separators
    (`image link` is `image_link`); None when the header lacks it."""
    for fold in _FOLDS:
        folded = [fold(h) for h in header]
        if fold(name) in folded:
            return folded.index(fold(name))
    return None


def shaper_for(mapping: FeedMapping, header: Sequence[str] | None, needed: Sequence[int],
               attrs: Sequence[str], ext_index: int) -> RowShaper | None:
    """The shaper of a CSV feed mapped by a preset whose rows depend on each other."""
    preset = preset_for(mapping.preset, "ftp_csv") if mapping.preset else None
    if preset is None or preset.rows is None or header is None:
        return None
    return RowShaper(preset.rows, header, needed, attrs, ext_index)


class RowShaper:
    """One run's shaping. The mapper picks the columns it reads from each row: `needed`
    gives the header index each picked column reads, `attrs` the attribute it fills."""

    def __init__(self, rows: Rows, header: Sequence[str], needed: Sequence[int],
                 attrs: Sequence[str], ext_index: int) -> None:
        def at(name: str) -> int | None:
            return column_of(header, name) if name else None

        def reading(index: int | None) -> list[int]:
            """The picked columns that read this header column."""
            return [j for j, i in enumerate(needed) if i == index and index is not None]

        self.skipped: dict[str, int] = {}  # reason -> rows skipped
        group = at(rows.group)
        images = [at(c) for c in rows.images]
        self._image: Getter | None = None
        self._ext: Getter = itemgetter(ext_index)
        self._others: Getter = self._ext
        if images and images[0] is not None:
            self._image = itemgetter(images[0])
            others = sorted((set(needed) | {ext_index}) - {group, *images})
            self._others = itemgetter(*(others or [ext_index]))
        self._group: Getter | None = itemgetter(group) if group is not None else None
        self._fill = ([j for c in rows.fill_down for j in reading(at(c))]
                      if group is not None else [])
        self._last_group: str | None = None  # of the previous batch's last row
        self._carried: dict[int, str] = {}  # picked column -> its value on that row
        tracker = at(rows.tracker)
        self._tracker: Getter | None = itemgetter(tracker) if tracker is not None else None
        self._untracked = [(j, value) for name, value in rows.untracked.items()
                           for j in reading(at(name))]
        sale = at(rows.sale)
        retail = [j for j, a in enumerate(attrs) if a == "retailPrice"]
        self._sale: Getter | None = itemgetter(sale) if sale is not None and retail else None
        self._retail = retail[0] if retail else 0
        # compareAtPrice read from the regular price: blank but on sale (a file without the
        # sale column has no sales)
        self._compare = [j for j, a in enumerate(attrs) if rows.sale and retail
                         and a == "compareAtPrice" and needed[j] == needed[self._retail]]

    def skip(self, rows: list[list[str]],
             lines: Sequence[int]) -> tuple[list[list[str]], Sequence[int]]:
        """The rows but those that only add an image: no externalId, a value in the image
        column and none in the other columns the mapping reads (counted in `skipped`)."""
        if self._image is None:
            return rows, lines
        blank = list(map(not_, map(self._ext, rows)))
        if not any(blank):
            return rows, lines
        image, others = self._image, self._others
        drop = [i for i in compress(range(len(rows)), blank)
                if image(rows[i]) and not "".join(others(rows[i]))]
        if not drop:
            return rows, lines
        self.skipped[IMAGE_ONLY] = self.skipped.get(IMAGE_ONLY, 0) + len(drop)
        keep = bytearray(b"\x01") * len(rows)
        for i in drop:
            keep[i] = 0
        return list(compress(rows, keep)), list(compress(lines, keep))

    def shape(self, rows: Sequence[Sequence[str]], cols: list[Sequence[str]]) -> bool:
        """The rows' picked columns (`cols`, changed in place) made to stand alone; whether
        any changed."""
        changed = self._fill_down(rows, cols) if self._fill else False
        if self._tracker is not None and self._untracked:
            trackers = list(map(self._tracker, rows))
            if "" in trackers:
                untracked = list(map(not_, trackers))
                for j, value in self._untracked:
                    cols[j] = list(map(getitem, zip(cols[j], repeat(value)), untracked))
                changed = True
        if self._sale is not None or self._compare:
            changed = self._on_sale(rows, cols) or changed
        return changed

    def _fill_down(self, rows: Sequence[Sequence[str]], cols: list[Sequence[str]]) -> bool:
        assert self._group is not None
        groups: list[str | None] = list(map(self._group, rows))
        # A row starts a product when its group is not the row before's, or is blank.
        starts = list(map(or_, map(ne, groups, [self._last_group, *groups]),
                          map(not_, groups)))
        ranks = range(1, len(groups) + 1)
        changed = False
        for j in self._fill:
            col = cols[j]
            if "" in col:
                # Each row takes the value of the latest row up to it that has one or that
                # starts its product: its rank, the highest so far (0: the value carried
                # from the batch before).
                lead = [self._carried.get(j, ""), *col]
                marks = map(mul, ranks, map(or_, map(truth, col), starts))
                col = list(map(lead.__getitem__, accumulate(marks, max)))
                cols[j] = col
                changed = True
            self._carried[j] = col[-1]
        self._last_group = groups[-1]
        return changed

    def _on_sale(self, rows: Sequence[Sequence[str]], cols: list[Sequence[str]]) -> bool:
        """On sale, the sale price is the retailPrice and the regular price (the column
        the retailPrice reads) the compareAtPrice; not on sale, no compareAtPrice."""
        sales = list(map(str.strip, map(self._sale, rows))) if self._sale else []
        if not any(sales):
            blanked = [j for j in self._compare if any(cols[j])]
            for j in blanked:
                cols[j] = [""] * len(rows)
            return bool(blanked)
        on = list(map(truth, sales))
        regular = cols[self._retail]
        cols[self._retail] = list(map(getitem, zip(regular, sales, strict=True), on))
        was = list(map(getitem, zip(repeat(""), regular), on))
        for j in self._compare:
            cols[j] = was
        return True
