"""File names that change: templates rendered, globs matched, the file chosen."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from worker.errors import FeedError
from worker.sources import names
from worker.sources.names import Entry, FileRule

# 23:30 UTC on 5 December: already 6 December in Berlin, still 5 December in New York
NOW = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
DAY = date(2026, 12, 5)


def listing(*items: str | tuple[str, str]) -> list[Entry]:
    return [Entry(i) if isinstance(i, str) else Entry(i[0], i[1]) for i in items]


@pytest.mark.parametrize(("template", "rendered"), [
    ("stock_{date:%Y%m%d}.csv", "stock_20261205.csv"),
    ("{date:%d.%m.%y}-{date:%j}.csv", "05.12.26-339.csv"),
    ("stock_{date:%-d_%-m}.csv", "stock_5_12.csv"),
    ("s_{date:%Y-%m-%d}_{{x}}.csv", "s_2026-12-05_{x}.csv"),
    ("{date:%b%%}.csv", "Dec%.csv"),
    ("plain.csv", "plain.csv"),
])
def test_render(template: str, rendered: str) -> None:
    assert names.render(template, DAY) == rendered


@pytest.mark.parametrize(("template", "reason"), [
    ("stock_{day:%Y}.csv", "a brace that opens no"),
    ("stock_{date:%Y.csv", "a brace that opens no"),
    ("stock_}.csv", "a brace that opens no"),
    ("stock_{date:}.csv", "needs a format"),
    ("stock_{date:%Y%H}.csv", "%H is not a date's directive"),
    ("stock_{date:%Y%}.csv", "ends inside a directive"),
])
def test_a_template_that_cannot_be_rendered(template: str, reason: str) -> None:
    with pytest.raises(FeedError, match=reason):
        names.render(template, DAY)


def test_patterns() -> None:
    assert names.is_pattern("stock_*.csv")
    assert names.is_pattern("stock_?.csv")
    assert names.is_pattern("stock_[0-9].csv")
    assert names.is_pattern("stock_{date:%Y}.csv", globs=False)
    assert not names.is_pattern("stock_*.csv", globs=False)  # HTTP: templates only
    assert not names.is_pattern("stock.csv")


def test_today_is_the_feed_time_zones() -> None:
    assert FileRule().today(NOW) == date(2026, 12, 5)
    assert FileRule(zone="Europe/Berlin").today(NOW) == date(2026, 12, 6)
    assert FileRule(zone="America/New_York").today(NOW) == date(2026, 12, 5)


def test_a_template_takes_today_then_yesterday() -> None:
    rule = FileRule(zone="Europe/Berlin")
    both = listing("stock_20261205.csv", "stock_20261206.csv", "stock_20261207.csv")
    assert names.choose("stock_{date:%Y%m%d}.csv", both, rule, "/out", NOW) == \
        names.Choice("stock_20261206.csv", date(2026, 12, 6), 1)
    only_yesterday = listing("stock_20261204.csv", "stock_20261205.csv")
    assert names.choose("stock_{date:%Y%m%d}.csv", only_yesterday, rule, "/out", NOW) == \
        names.Choice("stock_20261205.csv", date(2026, 12, 5), 1)


def test_no_file_for_today_or_yesterday_names_both() -> None:
    with pytest.raises(FeedError) as caught:
        names.choose("stock_{date:%Y%m%d}.csv", listing("stock_20261201.csv"),
                     FileRule(zone="Europe/Berlin"), "/out", NOW)
    assert str(caught.value) == (
        "no file matching 'stock_{date:%Y%m%d}.csv' in /out: neither today's "
        "'stock_20261206.csv' nor yesterday's 'stock_20261205.csv' in Europe/Berlin "
        "(1 file listed)")


def test_a_glob_takes_the_last_name_or_the_newest() -> None:
    files = listing(("stock_2.csv", "2026-12-05T06:00:00Z"),
                    ("stock_10.csv", "2026-12-04T06:00:00Z"),
                    ("stock_1.csv", "2026-12-05T07:00:00Z"),
                    ("other.csv", "2026-12-06T00:00:00Z"))
    assert names.choose("stock_*.csv", files, FileRule(), "/").name == "stock_2.csv"
    newest = names.choose("stock_*.csv", files, FileRule(pick="newest"), "/")
    assert (newest.name, newest.day, newest.matched) == ("stock_1.csv", None, 3)
    assert names.choose("stock_?.csv", files, FileRule(), "/").name == "stock_2.csv"
    assert names.choose("stock_1[0-9].csv", files, FileRule(), "/").name == "stock_10.csv"


def test_newest_of_a_tie_is_the_last_by_name() -> None:
    same = "2026-12-05T06:00:00Z"
    files = listing(("b.csv", same), ("c.csv", same), ("a.csv", same))
    assert names.choose("*.csv", files, FileRule(pick="newest"), "/").name == "c.csv"


def test_a_glob_with_a_template_and_directories_left_out() -> None:
    files = [Entry("stock_20261205_1.csv", "2026-12-05T01:00:00Z"),
             Entry("stock_20261205_2.csv", "2026-12-05T02:00:00Z"),
             Entry("stock_20261205_9.csv", is_file=False)]
    got = names.choose("stock_{date:%Y%m%d}_*.csv", files, FileRule(pick="newest"), "/out",
                       NOW)
    assert (got.name, got.day, got.matched) == ("stock_20261205_2.csv", DAY, 2)


def test_matching_is_case_sensitive_and_no_match_is_an_error() -> None:
    with pytest.raises(FeedError, match=r"^no file matching 'stock_\*.csv' in /out "
                                        r"\(2 files listed\)$"):
        names.choose("stock_*.csv", listing("STOCK_1.csv", "stock.csv"), FileRule(), "/out")


def test_newest_needs_modification_times() -> None:
    with pytest.raises(FeedError, match="does not say when the files matching"):
        names.choose("*.csv", listing("a.csv", "b.csv"), FileRule(pick="newest"), "host")
    # one match needs no times
    assert names.choose("a*.csv", listing("a.csv", "b.csv"), FileRule(pick="newest"),
                        "host").name == "a.csv"


def test_paths_keep_their_encoding() -> None:
    assert names.render_path("/%2Fout/stock_%7Bdate:%25Y%25m%25d%7D.csv", DAY) == \
        "/%2Fout/stock_20261205.csv"
    assert names.render_path("/exports/%7Bdate:%25Y-%25m-%25d%7D/a%20b.csv", DAY) == \
        "/exports/2026-12-05/a%20b.csv"
    assert names.split("/%2Fout/stock_%2A.csv") == ("/%2Fout", "stock_*.csv")
    assert names.with_name("/%2Fout/stock_*.csv", "stock 1?.csv") == "/%2Fout/stock%201%3F.csv"


@pytest.mark.parametrize(("mapping", "rule"), [
    ({}, FileRule()),
    ({"pick": "newest", "timeZone": "Europe/Berlin"}, FileRule("newest", "Europe/Berlin")),
])
def test_the_rule_from_the_mapping(mapping: dict[str, str], rule: FileRule) -> None:
    assert names.parse_rule(mapping) == rule


@pytest.mark.parametrize(("mapping", "reason"), [
    ({"pick": "oldest"}, r"mapping.pick 'oldest': use one of 'name', 'newest'"),
    ({"timeZone": "Mars/Olympus"}, r"mapping.timeZone 'Mars/Olympus' is not a known"),
    ({"timeZone": "../etc/passwd"}, r"mapping.timeZone '../etc/passwd' is not a known"),
    ({"timeZone": 1}, r"mapping.timeZone must be the name of a time zone"),
])
def test_a_bad_rule_names_its_key(mapping: dict[str, object], reason: str) -> None:
    with pytest.raises(FeedError, match=reason):
        names.parse_rule(mapping)
