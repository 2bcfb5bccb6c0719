"""Google Sheets links read as their CSV export (worker/sources/sheets.py)."""

from __future__ import annotations

import pytest

from worker.sources.sheets import export_url
from worker.urls import FeedUrl

ORIGIN = "https://docs.google.com"
DOC = "https://docs.google.com/spreadsheets/d/1AbC-d_9"


def exported(link: str, sheet: str | None = None, origin: str = ORIGIN) -> str:
    return str(export_url(FeedUrl.parse(link), origin, sheet).parsed)


@pytest.mark.parametrize(("link", "expected"), [
    (f"{DOC}/edit", f"{DOC}/export?format=csv"),
    (f"{DOC}/edit?usp=sharing", f"{DOC}/export?format=csv"),
    (f"{DOC}/edit#gid=1234", f"{DOC}/export?format=csv&gid=1234"),
    (f"{DOC}/edit?gid=55#gid=55", f"{DOC}/export?format=csv&gid=55"),
    (f"{DOC}/view", f"{DOC}/export?format=csv"),
    (f"{DOC}", f"{DOC}/export?format=csv"),
    (f"{DOC}/", f"{DOC}/export?format=csv"),
    ("https://docs.google.com/spreadsheets/d/e/2PACX-1x/pubhtml",
     "https://docs.google.com/spreadsheets/d/e/2PACX-1x/pub?output=csv"),
    ("https://docs.google.com/spreadsheets/d/e/2PACX-1x/pubhtml?gid=9&single=true",
     "https://docs.google.com/spreadsheets/d/e/2PACX-1x/pub?output=csv&gid=9&single=true"),
])
def test_a_shared_link_becomes_its_csv_export(link: str, expected: str) -> None:
    assert exported(link) == expected


def test_a_tab_by_name_when_the_link_names_none() -> None:
    assert exported(f"{DOC}/edit", sheet="Stock & Prices") == (
        f"{DOC}/gviz/tq?tqx=out:csv&sheet=Stock+%26+Prices")
    # the link's own tab wins
    assert exported(f"{DOC}/edit#gid=8", sheet="Stock") == f"{DOC}/export?format=csv&gid=8"


@pytest.mark.parametrize("link", [
    f"{DOC}/export?format=xlsx",
    f"{DOC}/gviz/tq?tqx=out:csv&sheet=A",
    "https://docs.google.com/spreadsheets/d/e/2PACX-1x/pub?output=csv",
    "https://docs.google.com/document/d/1AbC/edit",
    "https://example.com/spreadsheets/d/1AbC/edit",
    "http://docs.google.com/spreadsheets/d/1AbC/edit",  # another origin
])
def test_other_links_are_read_as_they_are(link: str) -> None:
    assert exported(link) == link


def test_a_link_keeps_its_credentials_masked() -> None:
    url = export_url(FeedUrl.parse("http://u:secret@127.0.0.1:8080/spreadsheets/d/X/edit"),
                     "http://127.0.0.1:8080")
    assert "secret" not in str(url)
    assert url.parsed.path == "/spreadsheets/d/X/export"


@pytest.mark.parametrize(("link", "expected"), [
    (f"{DOC}/edit", f"{DOC}/export?format=xlsx"),
    (f"{DOC}/edit#gid=1234", f"{DOC}/export?format=xlsx&gid=1234"),
    ("https://docs.google.com/spreadsheets/d/e/2PACX-1x/pubhtml?gid=9",
     "https://docs.google.com/spreadsheets/d/e/2PACX-1x/pub?output=xlsx&gid=9&single=true"),
    (f"{DOC}/export?format=csv", f"{DOC}/export?format=csv"),  # an export is read as it is
])
def test_a_spreadsheet_feed_reads_the_xlsx_export(link: str, expected: str) -> None:
    """The whole workbook (the sheet is picked in it by mapping.sheet: no gviz by name)."""
    assert str(export_url(FeedUrl.parse(link), ORIGIN, "Stock", "xlsx").parsed) == expected
