"""Google Sheets links read as their CSV or XLSX export.

A supplier shares a spreadsheet by the link its browser shows: `.../spreadsheets/d/ID/edit
#gid=123`, `.../edit?usp=sharing`, or, published to the web, `.../spreadsheets/d/e/PUBID/
pubhtml`. Those answer with a page, not the data. Each becomes its export URL:

- CSV (a CSV feed): the tab as CSV, the tab the link names (`gid`, in the query or after
  `#`), else the one the feed's mapping names (`sheet`: the tab's name), else the first;
- XLSX (a spreadsheet feed): the workbook (with the link's `gid`, if it names one), whose
  sheet the spreadsheet reader then picks by the mapping's `sheet`, name or index.

A link to an export (`/export`, `/pub?output=...`, `/gviz/tq`) is read as it is.

Only links on FEED_WORKER_SHEETS_ORIGIN (https://docs.google.com) are rewritten.
"""

from __future__ import annotations

import re

from yarl import URL

from worker.urls import FeedUrl

# /spreadsheets/d/ID/<view>, and /spreadsheets/d/e/PUBID/<view> (published to the web)
_DOC = re.compile(r"^/spreadsheets/d/(?P<id>[A-Za-z0-9_-]+)(?:/(?P<view>[^/]*))?/?$")
_PUB = re.compile(r"^/spreadsheets/d/e/(?P<id>[A-Za-z0-9_-]+)(?:/(?P<view>[^/]*))?/?$")
_GID = re.compile(r"(?:^|[&#?])gid=(?P<gid>\d+)")
_EXPORTS = ("export", "gviz", "pub")
EXPORT_FORMATS = ("csv", "xlsx")


def export_url(url: FeedUrl, origin: str, sheet: str | None = None,
               export: str = "csv") -> FeedUrl:
    """The CSV or XLSX (`export`) export of a Sheets link on `origin`; any other URL as it
    is."""
    if export not in EXPORT_FORMATS:
        raise ValueError(f"export {export!r}: one of {EXPORT_FORMATS}")
    parsed, home = url.parsed, URL(origin)
    if (parsed.scheme, parsed.host, parsed.port) != (home.scheme, home.host, home.port):
        return url
    path = parsed.path
    gid = _gid(parsed)
    published = _PUB.match(path)
    if published is not None:
        if published["view"] == "pub" and parsed.query.get("output"):
            return url  # already an export
        query = {"output": export, **({"gid": gid, "single": "true"} if gid else {})}
        return FeedUrl.of(parsed.with_path(
            f"/spreadsheets/d/e/{published['id']}/pub").with_query(query).with_fragment(None))
    doc = _DOC.match(path)
    if doc is None or doc["id"] == "e" or doc["view"] in _EXPORTS:
        return url
    base = parsed.with_fragment(None)
    if gid is None and sheet and export == "csv":
        return FeedUrl.of(base.with_path(f"/spreadsheets/d/{doc['id']}/gviz/tq").with_query(
            {"tqx": "out:csv", "sheet": sheet}))
    query = {"format": export, **({"gid": gid} if gid else {})}
    return FeedUrl.of(base.with_path(f"/spreadsheets/d/{doc['id']}/export").with_query(query))


def _gid(parsed: URL) -> str | None:
    """The tab a link names: `gid` in its query, else in its fragment (`#gid=123`)."""
    gid = parsed.query.get("gid")
    if gid is not None and gid.isdigit():
        return gid
    found = _GID.search(parsed.fragment or "")
    return found["gid"] if found else None
