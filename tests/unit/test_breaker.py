"""The cleanup circuit breaker's decision, without a database."""

from __future__ import annotations

from dataclasses import replace

import pytest

from worker.pipeline import breaker
from worker.pipeline.breaker import ThisPull
from worker.settings import Settings
from worker.store.bulk import MergeCounts
from worker.store.runs import Feed, LastPull

SETTINGS = Settings()
FEED = Feed(1, "acme", True, "ftp_csv", None, None, True, "decimal", None, {}, False)
LIMITS = breaker.limits(FEED, SETTINGS)


def counts(zeroed: int = 0, items: int = 1000, stock: int = 5000,
           stock_after: int | None = None) -> MergeCounts:
    return MergeCounts(distinct=items - zeroed, inserted=0, updated=0, zeroed=zeroed,
                       items_before=items, stock_before=stock,
                       stock_after=stock if stock_after is None else stock_after)


def this(rows: int = 1000, size: int = 100_000, compression: str | None = "none") -> ThisPull:
    return ThisPull(valid=rows, rows_read=rows, bytes=size, compression=compression)


LAST = LastPull(run_id=41, rows_read=1000, bytes=100_000, compression="none")


def rules(trips: list[breaker.Trip]) -> list[str]:
    return [t.rule for t in trips]


def test_the_defaults() -> None:
    assert (SETTINGS.cleanup_max_zeroed_share, SETTINGS.cleanup_max_quantity_drop,
            SETTINGS.breaker_max_rows_drop, SETTINGS.breaker_max_bytes_drop) == \
        (0.2, 0.5, 0.3, 0.5)
    assert LIMITS.zeroed == breaker.Limit(0.2, "FEED_WORKER_CLEANUP_MAX_ZEROED_SHARE")
    assert LIMITS.bytes == breaker.Limit(0.5, "FEED_WORKER_BREAKER_MAX_BYTES_DROP")


def test_a_normal_pull_passes() -> None:
    assert breaker.check(counts(zeroed=20), this(rows=980, size=98_000), LAST, LIMITS) == []


def test_the_issues_cut_download_is_held_by_the_zeroed_rule() -> None:
    # cut at 70%: 297 of 1000 items missing, 703 records, 70% of the bytes
    trips = breaker.check(counts(zeroed=297), this(rows=703, size=70_000), LAST, LIMITS)
    assert rules(trips) == ["zeroed"]
    assert trips[0].reason == (
        "held by the zeroed rule: cleanup would zero 297 of the feed's 1,000 items "
        "(29.7%, limit 20%: FEED_WORKER_CLEANUP_MAX_ZEROED_SHARE)")
    assert trips[0].figures["share"] == 0.297


def test_a_share_at_the_limit_passes_and_just_over_holds() -> None:
    assert breaker.check(counts(zeroed=200), this(), LAST, LIMITS) == []
    assert rules(breaker.check(counts(zeroed=201), this(), LAST, LIMITS)) == ["zeroed"]


def test_the_quantity_rule() -> None:
    trips = breaker.check(counts(stock=10_000, stock_after=4_000), this(), LAST, LIMITS)
    assert rules(trips) == ["quantity"]
    assert "from 10,000 to 4,000 (60% less, limit 50%" in trips[0].reason
    # a rise is never a drop
    assert breaker.check(counts(stock=10, stock_after=10_000), this(), LAST, LIMITS) == []


def test_the_rows_rule_names_the_run_and_the_numbers() -> None:
    last = LastPull(41, 520_000, 0, "none")
    trips = breaker.check(counts(items=0, stock=0), this(rows=350_000), last, LIMITS)
    assert rules(trips) == ["rows"]
    assert trips[0].reason == (
        "held by the rows rule: 350,000 records read against 520,000 in run 41 "
        "(32.7% fewer, limit 30%: FEED_WORKER_BREAKER_MAX_ROWS_DROP)")
    assert trips[0].figures == {
        "rows_read": 350_000, "last_rows_read": 520_000, "last_run_id": 41, "share": 0.3269,
        "limit": 0.3, "limit_source": "FEED_WORKER_BREAKER_MAX_ROWS_DROP"}
    assert breaker.check(counts(items=0), this(rows=364_000), last, LIMITS) == []  # 30%


def test_the_bytes_rule() -> None:
    trips = breaker.check(counts(), this(size=40_000), LAST, LIMITS)
    assert rules(trips) == ["bytes"]
    assert trips[0].reason == (
        "held by the bytes rule: the file is 40,000 bytes against 100,000 in run 41 "
        "(60% smaller, limit 50%: FEED_WORKER_BREAKER_MAX_BYTES_DROP)")
    assert breaker.check(counts(), this(size=50_000), LAST, LIMITS) == []


@pytest.mark.parametrize(("size", "last"), [
    (40_000, replace(LAST, bytes=0)),               # the last size is unknown
    (0, LAST),                                      # this one is
    (40_000, replace(LAST, compression="gzip")),    # gzip then, plain now: unlike sizes
])
def test_the_bytes_rule_compares_only_like_with_like(size: int, last: LastPull) -> None:
    assert breaker.check(counts(), this(size=size), last, LIMITS) == []


def test_a_first_pull_meets_only_the_zeroed_and_quantity_rules() -> None:
    tiny = this(rows=1, size=10)
    assert breaker.check(counts(), tiny, None, LIMITS) == []
    assert rules(breaker.check(counts(zeroed=999), tiny, None, LIMITS)) == ["zeroed"]
    assert rules(breaker.check(counts(), tiny, LAST, LIMITS)) == ["rows", "bytes"]


def test_a_file_without_rows_that_would_zero_items() -> None:
    trips = breaker.check(counts(zeroed=1000), this(rows=0), None, LIMITS)
    assert rules(trips) == ["empty", "zeroed"]
    assert "would zero all 1,000 items" in trips[0].reason


def test_every_tripped_rule_is_named_first_rule_first() -> None:
    trips = breaker.check(counts(zeroed=500, stock_after=1000), this(rows=500, size=10_000),
                          LAST, LIMITS)
    assert rules(trips) == ["zeroed", "quantity", "rows", "bytes"]
    reason = breaker.reason(trips)
    assert reason.startswith("held by the zeroed rule: ")
    assert "; held by the quantity rule: " in reason
    assert reason.endswith("(90% smaller, limit 50%: FEED_WORKER_BREAKER_MAX_BYTES_DROP)")
    details = breaker.details(trips)
    assert (details["rule"], details["zeroed"], details["limit"]) == ("zeroed", 500, 0.2)
    assert [a["rule"] for a in details["also"]] == ["quantity", "rows", "bytes"]
    assert "also" not in breaker.details(trips[:1])


def test_a_feeds_own_limit_beats_the_setting() -> None:
    strict = replace(FEED, breaker_max_zeroed_share=0.05, breaker_max_rows_drop=0.0)
    own = breaker.limits(strict, SETTINGS)
    assert own.zeroed == breaker.Limit(0.05, "inventory_feeds.breaker_max_zeroed_share")
    assert own.rows == breaker.Limit(0.0, "inventory_feeds.breaker_max_rows_drop")
    assert own.quantity == LIMITS.quantity  # NULL: the setting
    trips = breaker.check(counts(zeroed=60), this(rows=999), LAST, own)
    assert rules(trips) == ["zeroed", "rows"]
    assert "limit 5%: inventory_feeds.breaker_max_zeroed_share" in trips[0].reason
    loose = breaker.limits(replace(FEED, breaker_max_zeroed_share=1.0), SETTINGS)
    assert breaker.check(counts(zeroed=1000), this(rows=1000), None, loose) == []


def test_the_settings_change_the_limits() -> None:
    settings = replace(SETTINGS, breaker_max_rows_drop=0.9, breaker_max_bytes_drop=0.95)
    limits = breaker.limits(FEED, settings)
    assert breaker.check(counts(), this(rows=200, size=10_000), LAST, limits) == []


@pytest.mark.parametrize(("share", "text"), [(0.297, "29.7%"), (0.2, "20%"), (1.0, "100%"),
                                             (0.3269, "32.7%"), (0.0004, "0%")])
def test_percentages(share: float, text: str) -> None:
    assert breaker.pct(share) == text
