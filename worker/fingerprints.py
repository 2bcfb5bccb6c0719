"""Item fingerprints: a refresh recognises the rows that did not change and never sends them.

A pull stages each row with a fingerprint: the 64-bit xxh3 of its COPY text (its position
left out), seeded by the feed's column list. The merge stores it with every item it writes
(`inventory_feed_variants.fingerprint`); any other write of the item clears it (a trigger,
schemas/sql/0010_fingerprint.sql), so a stored fingerprint always means "this item is what
a merge of exactly that text made of it". The next pull of a large feed loads the feed's
fingerprints first (`Known`) and drops a row whose fingerprint is among them: the merge
would find it unchanged. Only the changed rows are copied and merged; the dropped ones are
counted here (`Seen`), so the run's counts and the circuit breaker's totals stay whole.

Duplicates keep "the last occurrence wins": a row is dropped only when no earlier row of
its key was staged (a bit set per staged key hash: a false positive stages a row more,
never less), and never when its key repeats within the batch. A key dropped earlier and
staged later is counted once (`overlap`: the merge tells which of the items it matched
were not among the unseen ones).

A large refresh merges its staged rows a segment at a time while the file still streams
(pipeline/pull.py). Each key must then be merged once: a staged row whose key a merged
segment had raises `Repeated`, and the run starts again without segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat

import numpy as np
import numpy.typing as npt
import xxhash

# Bumped when the staged text of the same values changes shape: every item is then
# rewritten once.
VERSION = 1

_hash = xxhash.xxh3_64_intdigest
MAX_BITS = 25

Int64s = npt.NDArray[np.int64]


class Repeated(Exception):
    """A staged row's key was in a segment already merged (the run is merged whole)."""


def seed(columns: Sequence[str], mask: int) -> int:
    """The fingerprints' seed: the staged columns, in order, and the merge's mask."""
    return _hash(f"{VERSION}:{mask}:{','.join(columns)}".encode())


@dataclass(frozen=True)
class Known:
    """A feed's available items when the pull starts: the fingerprints, sorted, and their
    items' ids (16 bytes an item); the ids of the items without a fingerprint; how many
    items are available and their tracked stock (the circuit breaker's totals before)."""

    fps: Int64s
    ids: Int64s
    unknown_ids: Int64s
    available: int
    stock: int

    @staticmethod
    def empty() -> Known:
        none = np.zeros(0, np.int64)
        return Known(none, none, none, 0, 0)

    @cached_property
    def _buckets(self) -> tuple[int, npt.NDArray[np.int32]]:
        """The fingerprints' top bits (about one bucket an item) and where each bucket's
        run starts in fps: a lookup reads two places in memory, where a binary search
        over a million items reads twenty (and each one misses the CPU's caches while
        a file is parsed)."""
        bits = max(1, len(self.fps).bit_length())
        shift = 64 - bits
        tops = (self.fps >> shift) + (1 << (bits - 1))
        starts = np.searchsorted(tops, np.arange((1 << bits) + 1)).astype(np.int32)
        return shift, starts

    def find(self, fps: Int64s) -> tuple[Int64s, npt.NDArray[np.bool_]]:
        """For each fingerprint: whether it is known, and where in fps."""
        shift, starts = self._buckets
        bucket = (fps >> shift) + (1 << (63 - shift))
        at = starts[bucket].astype(np.int64)
        end = starts[bucket + 1]
        hit = np.zeros(len(fps), np.bool_)
        found = at.copy()
        last = len(self.fps) - 1
        for _ in range(int((end - at).max(initial=0))):  # the fullest bucket's items
            live = at < end
            here = live & ~hit & (self.fps[np.minimum(at, last)] == fps)
            found[here] = at[here]
            hit |= here
            at += live
        return found, hit


@dataclass(frozen=True)
class Seen:
    """What the dropped rows stand for, for the merge and the counts."""

    known: Known
    mask: npt.NDArray[np.bool_]  # over known.fps: the items a dropped row stood for
    items: int                   # how many (distinct stored items)

    @property
    def unseen_ids(self) -> Int64s:
        """The feed's other available items: the missing ones are among them."""
        known = self.known
        return np.concatenate((known.ids[~self.mask], known.unknown_ids))


class Fingerprints:
    """Fingerprints one run's rows, batch by batch; with `known`, drops unchanged rows."""

    def __init__(self, columns: Sequence[str], mask: int, known: Known | None = None
                 ) -> None:
        self.seed = seed(columns, mask)
        self.known = known if known is not None and len(known.fps) else None
        self.dropped = 0  # rows dropped (duplicates of a dropped key included)
        if self.known is not None:
            self._seen = np.zeros(len(self.known.fps), np.bool_)
            # Bits per key hash: 16 per known item, at most 2**25 (4 MiB): a refresh
            # of 1M items with 10% changed stages 0.3% of its unchanged rows more.
            bits = 1 << min(MAX_BITS, max(16, (16 * len(self.known.fps)).bit_length()))
            self._slot_mask = bits - 1
            self._staged = np.zeros(bits >> 3, np.uint8)  # keys of staged rows
        # With segments: the key hashes staged since the last segment closed, and those
        # of the merged segments (sorted); None: no segments.
        self._segment: list[Int64s] | None = None
        self._merged = np.zeros(0, np.int64)

    def segmented(self, on: bool) -> None:
        """From here on, the staged rows' keys are kept, a segment at a time (or not:
        before any segment was merged)."""
        self._segment = [] if on else None

    def close_segment(self) -> None:
        """The rows staged since the last call are a segment about to be merged (or the
        last, merged once the file is whole): raises Repeated when one of their keys was
        in a segment before (8 bytes a key; sorted runs merged in linear time)."""
        assert self._segment is not None
        keys = np.sort(np.concatenate(self._segment)) if self._segment else self._merged[:0]
        self._segment = []
        merged = self._merged
        if len(merged) and len(keys):
            at = np.searchsorted(merged, keys)
            np.minimum(at, len(merged) - 1, out=at)
            if (merged[at] == keys).any():
                raise Repeated("a key staged again after its segment was merged")
        self._merged = np.concatenate((merged, keys))
        self._merged.sort(kind="stable")  # two sorted runs: merged, not sorted again

    def take(self, bodies: Sequence[str], keys: Sequence[str]
             ) -> tuple[list[int] | None, list[int]]:
        """The rows to stage (indexes into bodies; None: all) and their fingerprints."""
        n = len(bodies)
        fps = np.fromiter(map(_hash, map(str.encode, bodies), repeat(self.seed)), np.uint64,
                          n).view(np.int64)
        known = self.known
        if known is None or n == 0:
            return None, fps.tolist()
        at, hit = known.find(fps)
        keyed = np.fromiter(map(hash, keys), np.int64, n)
        slot = keyed & self._slot_mask
        drop = hit & ~_has(self._staged, slot)
        if drop.any():
            ordered = np.sort(keyed)  # (a sort alone: 6 times cheaper than np.unique's)
            if (ordered[1:] == ordered[:-1]).any():  # a key twice in the batch:
                _, inverse, counts = np.unique(keyed, return_inverse=True,  # stage each
                                               return_counts=True)  # occurrence
                drop &= counts[inverse] == 1
        keep = ~drop
        _add(self._staged, slot[keep])
        if self._segment is not None:
            self._segment.append(keyed[keep])
        if not drop.any():
            return None, fps.tolist()
        self._seen[at[drop]] = True
        self.dropped += int(drop.sum())
        kept = np.flatnonzero(keep)
        return kept.tolist(), fps[kept].tolist()

    def seen(self, always: bool = False) -> Seen | None:
        """None when no row was dropped (the merge then reads the feed's items itself),
        unless `always` (a segmented merge's last segment needs the unseen items)."""
        known = self.known
        if known is None or not (self.dropped or always):
            return None
        return Seen(known, self._seen, int(self._seen.sum()))


def _has(bits: npt.NDArray[np.uint8], slots: Int64s) -> npt.NDArray[np.bool_]:
    found: npt.NDArray[np.bool_] = (bits[slots >> 3] >> (slots & 7).astype(np.uint8)) & 1 != 0
    return found


def _add(bits: npt.NDArray[np.uint8], slots: Int64s) -> None:
    np.bitwise_or.at(bits, slots >> 3, np.left_shift(1, slots & 7).astype(np.uint8))


def overlap(seen: Seen, candidates: Sequence[int]) -> int:
    """Dropped items that a later row of their key staged after all (the merge counted
    them too), among the items the merge matched that were not unseen."""
    if not candidates:
        return 0
    return int(np.isin(np.asarray(candidates, np.int64), seen.known.ids[seen.mask]).sum())
