"""Feed URLs whose file name is a pattern (sources/names.py), at the sources' edge: over
FTP(S) and SFTP the directory is listed and the file the rule chooses is taken; over HTTP
the URL is rendered for today, then for yesterday when the server has no such file."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote

from yarl import URL

from worker.errors import FeedError, NoSuchFile
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sources import names
from worker.sources.download import Download
from worker.sources.http import http_stream
from worker.sources.names import Entry, FileRule
from worker.urls import FeedUrl


class Lister(Protocol):
    """ftp_list / sftp_list: the entries of the directory of the URL's file."""

    def __call__(self, url: FeedUrl, settings: Settings, *,
                 addresses: Sequence[str] | None = None) -> Awaitable[list[Entry]]: ...


async def choose_file(download: Download, settings: Settings, lister: Lister,
                      rule: FileRule, *, addresses: Sequence[str] | None) -> None:
    """Lists the directory of the download's URL and points the download at the file its
    pattern takes (`download.url`, `taken`, `chosen`); FeedError when none matches."""
    url = download.url
    head, pattern = names.split(url.raw_path)
    if names.has_template(unquote(head)):
        raise FeedError(f"feed URL {url.shown}: over FTP and SFTP only the file's name may "
                        "hold a date template, not its directories")
    names.check(pattern)  # before connecting: a template that cannot be rendered
    where = FeedUrl.of(url.parsed.with_path(f"{head}/", encoded=True)).shown
    entries = await lister(url, settings, addresses=addresses)
    choice = names.choose(pattern, entries, rule, where)
    taken = FeedUrl.of(url.parsed.with_path(names.with_name(url.raw_path, choice.name),
                                            encoded=True))
    download.url, download.taken = taken, taken.shown
    download.chosen = {"file": taken.shown}
    if choice.day is not None:
        download.chosen["file_date"] = choice.day.isoformat()
    if names.is_glob(pattern):
        download.chosen["file_matches"] = choice.matched


def rendered(url: FeedUrl, day: Any) -> FeedUrl:
    """The URL with the date templates of its path and query rendered for `day`."""
    parsed = url.parsed
    text = str(parsed.with_path(names.render_path(parsed.raw_path, day), encoded=True))
    if parsed.raw_query_string:
        text += "?" + names.render_query(parsed.raw_query_string, day)
    if parsed.raw_fragment:
        text += "#" + parsed.raw_fragment
    return FeedUrl.of(URL(text, encoded=True))


async def dated_http(download: Download, settings: Settings,
                     previous: dict[str, Any] | None, token: str | None,
                     rule: FileRule, options: SourceOptions | None = None
                     ) -> AsyncIterator[bytes]:
    """An HTTP URL with a date template: today's file, else (HTTP 404 or 410) yesterday's.
    The validators of the last read count only for the same file."""
    pattern = download.url
    today, yesterday = names.days(rule, "{date:")
    for last, day in enumerate((today, yesterday)):
        url = rendered(pattern, day)
        download.url, download.taken = url, url.shown
        download.chosen = {"file": url.shown, "file_date": day.isoformat() if day else None}
        same = previous if previous and previous.get("file") == url.shown else None
        inner = http_stream(url, settings, previous=same, token=token, download=download,
                            options=options)
        started = False
        try:
            async with contextlib.aclosing(inner):  # type: ignore[type-var]
                async for chunk in inner:
                    started = True
                    yield chunk
        except NoSuchFile as exc:
            if started:
                raise
            if last:
                first = rendered(pattern, today).shown
                zone = f"in {rule.zone}" if rule.zone != "UTC" else "UTC"
                raise NoSuchFile(f"no file at today's {first} nor at yesterday's "
                                 f"{url.shown} ({zone}): {exc}") from None
            continue
        download.validators["file"] = url.shown
        return
