"""Feed sources: a parsed URL in, a Download out (the file's bytes, inflated, and what the
source learned on the way), with guard rails."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from worker.errors import FeedError, NotModified
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sources import names
from worker.sources.decompress import decompressed
from worker.sources.download import Download, capped
from worker.sources.guard import Policy
from worker.sources.http import http_stream
from worker.sources.local import file_stream
from worker.sources.names import FileRule
from worker.sources.patterned import Lister, choose_file, dated_http
from worker.sources.sheets import export_url
from worker.urls import FeedUrl

SCHEMES = ("http", "https", "ftp", "ftps", "sftp", "file (feed-worker import --url only)")

Meter = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


def open_source(url: FeedUrl, settings: Settings, *, local_files: bool = False,
                previous: dict[str, Any] | None = None, token: str | None = None,
                zip_entry: str | None = None, sheet: str | int | None = None,
                export: str = "csv", meter: Meter | None = None,
                rule: FileRule | None = None,
                source: SourceOptions | None = None) -> Download:
    """The file at the URL, as a Download. file:// only where a person asked for it
    (feed-worker import --url), never for a URL that came from a feed's settings or a
    message. With `previous` validators of the last read, an unchanged file raises
    NotModified (HTTP: ETag and Last-Modified; FTP/SFTP: size and modification time).
    Every transport's bytes are held to FEED_WORKER_MAX_FILE_BYTES (capped), then go
    through `meter` as downloaded, then are inflated when gzip or zip (`zip_entry`: the
    entry to take). A download shorter than the length the transport announced raises
    TruncatedError. A Google Sheets link is read as its `export` ("csv": `sheet` is the
    tab's name, when the link names none; "xlsx": the workbook; sources/sheets.py). A
    spreadsheet (an XLSX or ODS is a zip) is left whole. A file name that is a pattern
    (a glob or a date template; sources/names.py) takes the file `rule` chooses.
    `source`: the feed's SFTP key and pinned host keys, FTPS mode and certificates
    (mapping; worker/sourceopts.py)."""
    if url.scheme in ("http", "https"):
        url = export_url(url, settings.sheets_origin,
                         sheet if isinstance(sheet, str) else None, export)
    download = Download(url, settings.max_file_bytes)
    rule = rule if rule is not None else FileRule()
    raw = capped(_open(download, settings, local_files, previous, token, rule,
                       source or SourceOptions()), download)
    download.chunks = decompressed(meter(raw) if meter is not None else raw,
                                   settings.max_decompressed_bytes, zip_entry,
                                   on_kind=functools.partial(_found, download),
                                   max_ratio=settings.max_inflation_ratio)
    return download


def _found(download: Download, kind: str) -> None:
    download.compression = kind


def _open(download: Download, settings: Settings, local_files: bool,
          previous: dict[str, Any] | None, token: str | None,
          rule: FileRule, source: SourceOptions) -> AsyncIterator[bytes]:
    url = download.url
    scheme = url.scheme
    if scheme in ("http", "https"):
        if names.has_template(url.path) or names.has_template(url.parsed.query_string):
            return dated_http(download, settings, previous, token, rule, source)
        return http_stream(url, settings, previous=previous, token=token, download=download,
                           options=source)
    # FTP and SFTP clients are imported when a feed needs them: importing asyncssh is a
    # noticeable part of the start of every `feed-worker import`.
    if scheme in ("ftp", "ftps"):
        from worker.sources.ftp import ftp_stat, ftp_stream
        from worker.sources.ftplist import ftp_list

        return _guarded(download, settings, functools.partial(ftp_stream, options=source),
                        functools.partial(ftp_stat, options=source), previous,
                        (functools.partial(ftp_list, options=source), rule))
    if scheme == "sftp":
        from worker.sources.sftp import sftp_list, sftp_stat, sftp_stream

        known_hosts = os.path.expanduser(settings.sftp_known_hosts)
        return _guarded(download, settings,
                        functools.partial(sftp_stream, known_hosts=known_hosts, options=source),
                        functools.partial(sftp_stat, known_hosts=known_hosts, options=source),
                        previous,
                        (functools.partial(sftp_list, known_hosts=known_hosts, options=source),
                         rule))
    if scheme == "file" and local_files:
        return file_stream(url, settings, download=download)
    raise FeedError(
        f"feed URL {url.shown}: scheme {scheme or '(none)'!r} is not supported "
        f"(supported: {', '.join(SCHEMES)})"
    )


class Stream(Protocol):
    """ftp_stream / sftp_stream: the file's bytes, from the checked addresses."""

    def __call__(self, url: FeedUrl, settings: Settings, *,
                 addresses: Sequence[str] | None = None,
                 download: Download | None = None) -> AsyncIterator[bytes]: ...


class Stat(Protocol):
    """ftp_stat / sftp_stat: (size, modification time), from the checked addresses."""

    def __call__(self, url: FeedUrl, settings: Settings, *,
                 addresses: Sequence[str] | None = None
                 ) -> Awaitable[tuple[int | None, str | None]]: ...


async def _guarded(download: Download, settings: Settings, stream: Stream, stat: Stat,
                   previous: dict[str, Any] | None,
                   pattern: tuple[Lister, FileRule]) -> AsyncIterator[bytes]:
    """FTP(S) and SFTP: the host must resolve to allowed addresses only, and the client
    connects to exactly those addresses (no second lookup that DNS rebinding could
    answer differently), as the HTTP client does through GuardedResolver. A file name
    that is a pattern takes the file the directory's listing and the rule choose. The
    file's size and modification time (and the file a pattern took) are its validators."""
    url = download.url
    policy = Policy(settings.networks())
    policy.check_literal(url.host or "")
    addresses = [address for _, address in await policy.resolve(url.host or "", url.port or 0)]
    if names.is_pattern(names.split(url.raw_path)[1]):
        await choose_file(download, settings, *pattern, addresses=addresses)
        url = download.url
    size, mtime = await stat(url, settings, addresses=addresses)
    file = download.chosen.get("file")
    if previous and size is not None and mtime is not None and \
            (previous.get("size"), previous.get("mtime"), previous.get("file")) == \
            (size, mtime, file):
        raise NotModified(f"{url.shown} is unchanged (size {size}, modified {mtime})")
    download.validators.update(size=size, mtime=mtime)
    if file is not None:
        download.validators["file"] = file
    inner = stream(url, settings, addresses=addresses, download=download)
    async with contextlib.aclosing(inner):  # type: ignore[type-var]
        async for chunk in inner:
            yield chunk
