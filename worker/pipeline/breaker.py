"""The cleanup circuit breaker: whether a pull with cleanup on looks wrong enough to hold.

A pure decision over what the merge would do and what the feed's last succeeded pull read.
A held pull applies nothing; `import --force` or a pull-request with "force" applies it.
Rules, in the order a hold names them:

- empty:    the file has no rows, yet cleanup would zero items;
- zeroed:   cleanup would zero more than a share of the feed's available items;
- quantity: the feed's total tracked quantity would drop by more than a share;
- rows:     fewer records read than the last succeeded pull's, by more than a share;
- bytes:    a smaller file (bytes as downloaded) than the last succeeded pull's, by more
            than a share; judged only when both sizes are known and the file came with the
            same compression (a gzip file against a plain one would compare unlike sizes).

The rows and bytes rules need a last succeeded pull: a feed's first pull meets only the
others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.settings import Settings, env_name
from worker.store.bulk import MergeCounts
from worker.store.runs import Feed, LastPull

RULES = ("empty", "zeroed", "quantity", "rows", "bytes")

# rule -> (Settings field, inventory_feeds column that overrides it for one feed)
_SOURCES = {
    "zeroed": ("cleanup_max_zeroed_share", "breaker_max_zeroed_share"),
    "quantity": ("cleanup_max_quantity_drop", "breaker_max_quantity_drop"),
    "rows": ("breaker_max_rows_drop", "breaker_max_rows_drop"),
    "bytes": ("breaker_max_bytes_drop", "breaker_max_bytes_drop"),
}


@dataclass(frozen=True)
class Limit:
    share: float
    source: str  # the setting's variable, or inventory_feeds.<column> when the feed sets it


@dataclass(frozen=True)
class Limits:
    zeroed: Limit
    quantity: Limit
    rows: Limit
    bytes: Limit


def limits(feed: Feed, settings: Settings) -> Limits:
    """The feed's own limit where its column is set (not NULL), else the worker's setting."""
    chosen = {}
    for rule, (setting, column) in _SOURCES.items():
        own = getattr(feed, column)
        chosen[rule] = (Limit(float(own), f"inventory_feeds.{column}") if own is not None
                        else Limit(getattr(settings, setting), env_name(setting)))
    return Limits(**chosen)


@dataclass(frozen=True)
class ThisPull:
    """What the pull read, besides the merge's counts."""

    valid: int        # rows mapped and staged
    rows_read: int    # records read, rejected ones included (feed_runs.rows_read)
    bytes: int        # as downloaded (feed_runs.bytes)
    compression: str | None


@dataclass(frozen=True)
class Trip:
    """One rule that holds the pull: its name, a sentence with the numbers, the numbers."""

    rule: str
    reason: str
    figures: dict[str, Any]


def check(counts: MergeCounts, pull: ThisPull, last: LastPull | None,
          lim: Limits) -> list[Trip]:
    """Every rule the pull trips, in RULES order; empty when it may be applied."""
    trips: list[Trip] = []
    if pull.valid == 0 and counts.zeroed:
        trips.append(Trip("empty", f"held by the empty rule: the file has no rows: cleanup "
                          f"would zero all {counts.zeroed:,} items",
                          {"zeroed": counts.zeroed, "rows_read": pull.rows_read}))
    if counts.items_before:
        share = counts.zeroed / counts.items_before
        if share > lim.zeroed.share:
            trips.append(Trip(
                "zeroed",
                f"held by the zeroed rule: cleanup would zero {counts.zeroed:,} of the feed's "
                f"{counts.items_before:,} items ({pct(share)}, {_limit(lim.zeroed)})",
                {"zeroed": counts.zeroed, "items_before": counts.items_before,
                 **_numbers(share, lim.zeroed)}))
    drop = counts.stock_before - counts.stock_after
    if counts.stock_before and drop > 0:
        share = drop / counts.stock_before
        if share > lim.quantity.share:
            trips.append(Trip(
                "quantity",
                f"held by the quantity rule: the feed's tracked quantity would drop from "
                f"{counts.stock_before:,} to {counts.stock_after:,} ({pct(share)} less, "
                f"{_limit(lim.quantity)})",
                {"stock_before": counts.stock_before, "stock_after": counts.stock_after,
                 **_numbers(share, lim.quantity)}))
    if last is None:
        return trips
    if last.rows_read > 0 and pull.rows_read < last.rows_read:
        share = (last.rows_read - pull.rows_read) / last.rows_read
        if share > lim.rows.share:
            trips.append(Trip(
                "rows",
                f"held by the rows rule: {pull.rows_read:,} records read against "
                f"{last.rows_read:,} in run {last.run_id} ({pct(share)} fewer, "
                f"{_limit(lim.rows)})",
                {"rows_read": pull.rows_read, "last_rows_read": last.rows_read,
                 "last_run_id": last.run_id, **_numbers(share, lim.rows)}))
    comparable = last.bytes > 0 and pull.bytes > 0 and pull.compression == last.compression
    if comparable and pull.bytes < last.bytes:
        share = (last.bytes - pull.bytes) / last.bytes
        if share > lim.bytes.share:
            trips.append(Trip(
                "bytes",
                f"held by the bytes rule: the file is {pull.bytes:,} bytes against "
                f"{last.bytes:,} in run {last.run_id} ({pct(share)} smaller, "
                f"{_limit(lim.bytes)})",
                {"bytes": pull.bytes, "last_bytes": last.bytes, "last_run_id": last.run_id,
                 **_numbers(share, lim.bytes)}))
    return trips


def empty_file(rows_read: int, size: int) -> Trip:
    """The file is empty (no bytes, or a header without rows): nothing to merge, and
    cleanup would zero every item of the feed."""
    return Trip("empty", "held by the empty rule: the file is empty: cleanup would zero "
                "every item of the feed (force applies it)",
                {"rows_read": rows_read, "bytes": size})


def reason(trips: list[Trip]) -> str:
    """The run's error: every tripped rule with its numbers, first rule first."""
    return "; ".join(t.reason for t in trips)


def details(trips: list[Trip]) -> dict[str, Any]:
    """feed_runs.details["breaker"]: the first rule's name and numbers, and the others
    that tripped too."""
    first, *others = trips
    out: dict[str, Any] = {"rule": first.rule, **first.figures}
    if others:
        out["also"] = [{"rule": t.rule, **t.figures} for t in others]
    return out


def pct(share: float) -> str:
    """A share as a percentage with at most one decimal: 0.297 -> '29.7%', 0.2 -> '20%'."""
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


def _limit(limit: Limit) -> str:
    return f"limit {pct(limit.share)}: {limit.source}"


def _numbers(share: float, limit: Limit) -> dict[str, Any]:
    return {"share": round(share, 4), "limit": limit.share, "limit_source": limit.source}
