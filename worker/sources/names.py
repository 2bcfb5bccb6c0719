"""File names that change: a feed URL whose file name is a pattern, and which file of a
directory it takes. Pure: the sources list the directory (FTP, FTPS, SFTP) or ask for the
rendered URL (HTTP); this module parses, renders, matches and chooses.

The pattern is the last segment of the URL's path (the file's name; HTTP: anywhere in
the path), decoded:
- a date template, `{date:FORMAT}` with strftime's date directives (`%Y %m %d %y %j %b
  %B %a %A %e %u %V %G %U %W %%`; `%-d`, `%-m`: without a leading zero): today's date in
  the feed's time zone (`mapping.timeZone`, default UTC), else yesterday's when today's
  file is not there yet; `{{` and `}}` are literal braces;
- a glob (FTP, FTPS, SFTP only): `*` any characters, `?` one (written `%3F` in a URL),
  `[abc]` / `[!abc]` one of a set; `[*]` is a literal `*`. Compared case-sensitively
  with the names the directory lists; directories are never taken.

Of the files that match, `mapping.pick` chooses: `name` (the default) the last in name
order (dated names sort by their dates), `newest` the latest modification time (a tie:
the last in name order).
"""

from __future__ import annotations

import fnmatch
import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from worker.errors import FeedError
from worker.model import FeedMapping

PICKS = ("name", "newest")
GLOB_CHARS = frozenset("*?[")
# {date:FORMAT}, or a literal brace written twice
_TOKEN = re.compile(r"\{\{|\}\}|\{date:(?P<format>[^{}]*)\}|[{}]")
_DIRECTIVE = re.compile(r"%-?(.)")  # %-d: without the leading zero
DATE_DIRECTIVES = frozenset("YmdyjbBaAeuVGUW%")


@dataclass(frozen=True)
class FileRule:
    """A feed's choice among the files a pattern matches (mapping.pick, mapping.timeZone)."""

    pick: str = "name"
    zone: str = "UTC"

    def today(self, now: datetime | None = None) -> date:
        """Today in the feed's time zone."""
        at = now if now is not None else datetime.now(zoneinfo.ZoneInfo("UTC"))
        return at.astimezone(zoneinfo.ZoneInfo(self.zone)).date()


@dataclass(frozen=True)
class Entry:
    """A name a directory listing gave, with what the server said of it."""

    name: str
    modified: str | None = None  # ISO 8601 UTC, 2026-12-05T06:00:00Z (None: not said)
    size: int | None = None
    is_file: bool = True


@dataclass(frozen=True)
class Choice:
    """The file a pattern took: its name, the day its template was rendered for (None
    without a template), and how many files matched."""

    name: str
    day: date | None
    matched: int


def file_rule(mapping: FeedMapping) -> FileRule:
    """The rule of a feed's parsed mapping."""
    return FileRule(pick=mapping.pick, zone=mapping.time_zone)


def parse_rule(data: Any) -> FileRule:
    """mapping.pick and mapping.timeZone, checked; FeedError naming the key otherwise."""
    mapping = data if isinstance(data, dict) else {}
    pick = mapping.get("pick", "name")
    if pick not in PICKS:
        raise FeedError(f"mapping.pick {pick!r}: use one of "
                        f"{', '.join(repr(p) for p in PICKS)}")
    zone = mapping.get("timeZone", "UTC")
    if not isinstance(zone, str) or not zone:
        raise FeedError("mapping.timeZone must be the name of a time zone "
                        "(IANA, e.g. 'Europe/Berlin')")
    try:
        zoneinfo.ZoneInfo(zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise FeedError(f"mapping.timeZone {zone!r} is not a known time zone "
                        "(IANA, e.g. 'Europe/Berlin')") from None
    return FileRule(pick=pick, zone=zone)


def has_template(text: str) -> bool:
    return "{date:" in text


def is_glob(name: str) -> bool:
    return any(c in GLOB_CHARS for c in name)


def is_pattern(name: str, *, globs: bool = True) -> bool:
    """Whether a file name (decoded) is a pattern: a date template, or (globs) a glob."""
    return has_template(name) or (globs and is_glob(name))


def check(text: str) -> None:
    """FeedError when a template cannot be rendered: a stray brace, a placeholder other
    than `{date:...}`, an empty format or a directive that is not a date's."""
    for token in _TOKEN.finditer(text):
        if token[0] in ("{{", "}}"):
            continue
        fmt = token["format"]
        if fmt is None:
            raise FeedError(f"file name {text!r}: a brace that opens no {{date:...}} "
                            "(write a literal brace twice: {{ or }})")
        if not fmt:
            raise FeedError(f"file name {text!r}: {{date:}} needs a format, e.g. "
                            "{date:%Y%m%d}")
        for directive in _DIRECTIVE.findall(fmt):
            if directive not in DATE_DIRECTIVES:
                raise FeedError(f"file name {text!r}: %{directive} is not a date's "
                                "directive (use %Y %m %d %y %j %b %B %a %A %e %u %V %G "
                                "%U %W)")
        if "%" in _DIRECTIVE.sub("", fmt):
            raise FeedError(f"file name {text!r}: the format {fmt!r} ends inside a "
                            "directive")


def render(text: str, day: date) -> str:
    """The text with each `{date:FORMAT}` as `day` formats it, `{{`/`}}` as braces."""
    check(text)

    def one(token: re.Match[str]) -> str:
        if token[0] in ("{{", "}}"):
            return token[0][0]
        return day.strftime(token["format"])

    return _TOKEN.sub(one, text)


def render_path(raw_path: str, day: date) -> str:
    """A URL's raw (percent-encoded) path with the templates of every segment rendered,
    each segment encoded again (`%2F` stays `%2F`)."""
    return "/".join(quote(render(unquote(s), day), safe="") if has_template(unquote(s))
                    else s for s in raw_path.split("/"))


def render_query(raw_query: str, day: date) -> str:
    """A URL's raw query string with the templates of its names and values rendered."""
    def part(raw: str) -> str:
        text = unquote(raw)
        return quote(render(text, day), safe="") if has_template(text) else raw

    return "&".join("=".join(part(p) for p in pair.split("=", 1))
                    for pair in raw_query.split("&"))


def split(raw_path: str) -> tuple[str, str]:
    """(the raw path up to the file's name, the file's name decoded)."""
    head, _, last = raw_path.rpartition("/")
    return head, unquote(last)


def with_name(raw_path: str, name: str) -> str:
    """The raw path with its file's name replaced (and encoded)."""
    head, _ = split(raw_path)
    return f"{head}/{quote(name, safe='')}"


def days(rule: FileRule, pattern: str, now: datetime | None = None) -> list[date | None]:
    """The days a pattern is tried for, in order: today and yesterday in the feed's time
    zone for a template; one pass (None) without one."""
    if not has_template(pattern):
        return [None]
    today = rule.today(now)
    return [today, today - timedelta(days=1)]


def choose(pattern: str, entries: list[Entry], rule: FileRule, where: str,
           now: datetime | None = None) -> Choice:
    """The file of a directory's listing that the pattern (a decoded file name) takes, as
    the module doc says; FeedError naming the pattern and what was tried when none
    matches, or when `newest` meets a listing without modification times."""
    files = [e for e in entries if e.is_file]
    tried: list[str] = []
    for day in days(rule, pattern, now):
        wanted = pattern if day is None else render(pattern, day)
        tried.append(wanted)
        if is_glob(wanted):
            matches = [e for e in files if fnmatch.fnmatchcase(e.name, wanted)]
        else:
            matches = [e for e in files if e.name == wanted]
        if matches:
            return Choice(_pick(matches, rule.pick, wanted, where).name, day, len(matches))
    listed = f"{len(files)} file{'' if len(files) == 1 else 's'} listed"
    if len(tried) == 1:
        raise FeedError(f"no file matching {pattern!r} in {where} ({listed})")
    zone = f" in {rule.zone}" if rule.zone != "UTC" else " (UTC)"
    raise FeedError(f"no file matching {pattern!r} in {where}: neither today's "
                    f"{tried[0]!r} nor yesterday's {tried[1]!r}{zone} ({listed})")


def _pick(matches: list[Entry], pick: str, wanted: str, where: str) -> Entry:
    by_name = sorted(matches, key=lambda e: e.name)
    if pick == "name" or len(by_name) == 1:
        return by_name[-1]
    if any(e.modified is None for e in by_name):
        raise FeedError(f"mapping.pick 'newest': the server at {where} does not say when "
                        f"the files matching {wanted!r} were modified")
    # max keeps the first of a tie: the last in name order, read from the end
    return max(reversed(by_name), key=lambda e: e.modified or "")
