"""Feed sources: a URL in, an async iterator of byte chunks out, with guard rails."""

from __future__ import annotations

from collections.abc import AsyncIterator

from yarl import URL

from worker.errors import FeedError
from worker.settings import Settings
from worker.sources.http import http_stream
from worker.urls import mask

SCHEMES = ("http", "https")


def open_source(url: str, settings: Settings) -> AsyncIterator[bytes]:
    try:
        scheme = URL(url).scheme.lower()
    except (ValueError, TypeError):
        raise FeedError(f"feed URL {mask(url)} cannot be parsed") from None
    if scheme in ("http", "https"):
        return http_stream(url, settings)
    raise FeedError(
        f"feed URL {mask(url)}: scheme {scheme or '(none)'!r} is not supported "
        f"(supported: {', '.join(SCHEMES)})"
    )
