"""A first import's rows, copied straight into the items table.

A pull into a feed that has no items yet (and no daily SKU limit) has nothing to merge
with: every row is a new item. Its rows then skip the staging table and the merge, and go
to `inventory_feed_variants` in one COPY while the file streams (pipeline/pull.py takes the
feed's merge lock first and checks that it is still empty). The rows' text is the staged
text (the same fingerprints), between the feed's id and the columns a merge's insert
sets: the two `now` stamps and the pull's order time.

A key that repeats would break the COPY (the unique key) and "the last occurrence wins":
each batch's keys are checked against every key sent before (`KeySet`, exact on 64-bit
hashes). From the first batch that has a key seen before (or twice), the rest of the file
is staged and merged as usual; `spilled` tells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# The item columns that have a default where a staged blank means "the default" (the
# merge's coalesce): NOT NULL columns, which COPY cannot leave blank.
DEFAULTS = {"inventory_policy": "track", "grams": "0", "options": "[]", "images": "[]",
            "extra": "{}"}
# What a merge's insert sets besides the mapped columns, in the COPY's column order.
STAMPS = ("inventory_updated_at", "last_fetched_at", "ordered_at")

Hashes = npt.NDArray[np.int64]


class KeySet:
    """Every key hash added so far, as sorted runs (8 bytes a key): a run is merged into
    the one before it while that one is no larger, up to `cap` hashes, so that the work
    stays about n log n and the memory of a merge small."""

    def __init__(self, cap: int = 1 << 20) -> None:
        self.runs: list[Hashes] = []
        self.cap = cap

    def __len__(self) -> int:
        return sum(map(len, self.runs))

    def add(self, hashes: Hashes) -> bool:
        """Adds the hashes unless one repeats (among them, or a hash added before):
        then adds nothing and returns False."""
        run = np.sort(hashes)
        if len(run) > 1 and bool((run[1:] == run[:-1]).any()):
            return False
        for old in self.runs:
            at = np.searchsorted(old, run)
            np.minimum(at, len(old) - 1, out=at)
            if bool((old[at] == run).any()):
                return False
        runs = self.runs
        while runs and len(runs[-1]) <= len(run) and len(runs[-1]) + len(run) <= self.cap:
            run = np.sort(np.concatenate((runs.pop(), run)), kind="stable")
        runs.append(run)
        return True


class DirectRows:
    """One first import's COPY text for the items table, until a key repeats."""

    def __init__(self, feed_id: int, columns: Sequence[str], ordered_at: str) -> None:
        self.columns = ["inventory_feed_id", *columns, "fingerprint", *STAMPS]
        # the merge's insert: now() twice (COPY reads `now` as the transaction's start)
        # and the run's start as the order time
        self.row = f"{feed_id}\t{{}}\t{{}}\tnow\tnow\t{ordered_at}\n".format
        self._defaults = [(j, DEFAULTS[c]) for j, c in enumerate(columns) if c in DEFAULTS]
        self.keys = KeySet()
        self.spilled = False  # a key repeated: the rest of the file is staged
        self.rows = 0  # rows copied

    def take(self, keys: Sequence[str]) -> bool:
        """Whether a batch with these keys goes straight in (else it and every later one
        is staged)."""
        if self.spilled:
            return False
        if self.keys.add(np.fromiter(map(hash, keys), np.int64, len(keys))):
            self.rows += len(keys)
            return True
        self.spilled = True
        self.keys = KeySet()  # not needed any more
        return False

    def bodies(self, cols: Sequence[Sequence[str]], bodies: list[str]) -> list[str]:
        """The rows' text as the items table takes it: a blank where a column has a
        default is that default (the staged text, which the fingerprints are of, keeps
        the blank)."""
        blank = [j for j, _ in self._defaults if "" in cols[j]]
        if not blank:
            return bodies
        filled = list(cols)
        for j, default in self._defaults:
            if j in blank:
                filled[j] = [v or default for v in cols[j]]
        return list(map("\t".join, zip(*filled, strict=True)))
