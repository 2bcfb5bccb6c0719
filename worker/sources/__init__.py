"""Feed sources: a URL in, an async iterator of byte chunks out, with guard rails."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable

from yarl import URL

from worker.errors import FeedError
from worker.settings import Settings
from worker.sources.ftp import ftp_stream
from worker.sources.guard import Policy
from worker.sources.http import http_stream
from worker.sources.local import file_stream
from worker.sources.sftp import sftp_stream
from worker.urls import mask

SCHEMES = ("http", "https", "ftp", "ftps", "sftp", "file (feed-worker import --url only)")


def open_source(url: str, settings: Settings, *, local_files: bool = False
                ) -> AsyncIterator[bytes]:
    """The bytes at the URL. file:// only where a person asked for it (feed-worker import
    --url), never for a URL that came from a feed's settings or a message."""
    try:
        scheme = URL(url).scheme.lower()
    except (ValueError, TypeError):
        raise FeedError(f"feed URL {mask(url)} cannot be parsed") from None
    if scheme in ("http", "https"):
        return http_stream(url, settings)
    if scheme in ("ftp", "ftps"):
        return _guarded(url, settings, ftp_stream)
    if scheme == "sftp":
        known_hosts = os.path.expanduser(settings.sftp_known_hosts)
        return _guarded(url, settings,
                        functools.partial(sftp_stream, known_hosts=known_hosts))
    if scheme == "file" and local_files:
        return file_stream(url, settings)
    raise FeedError(
        f"feed URL {mask(url)}: scheme {scheme or '(none)'!r} is not supported "
        f"(supported: {', '.join(SCHEMES)})"
    )


async def _guarded(url: str, settings: Settings,
                   stream: Callable[[str, Settings], AsyncIterator[bytes]]
                   ) -> AsyncIterator[bytes]:
    """FTP(S) and SFTP: the host must resolve to allowed addresses only. (The client then
    resolves the name again; the HTTP client, which connects to the checked address
    itself, has no such window.)"""
    u = URL(url)
    policy = Policy(settings.networks())
    policy.check_literal(u.host or "")
    await policy.resolve(u.host or "", u.port or 0)
    async for chunk in stream(url, settings):
        yield chunk
