"""A download: the file's bytes, and what the source learns about it as they come."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from worker.errors import SourceError
from worker.sources.transfer import Transfer
from worker.urls import FeedUrl


@dataclass(eq=False)
class Download:
    """One file on its way in, from open_source(). Iterating it gives the file's bytes
    (inflated when gzip or zip); the other fields are filled in by the source as the bytes
    come, so they are complete once the iteration has ended:

    - `validators`: this read's, for cache_imports (HTTP: `etag`, `last_modified`;
      FTP/SFTP: `size`, `mtime`);
    - `link_next`: the absolute URL of an HTTP `Link: <...>; rel="next"` header;
    - `compression`: "gzip", "zip" or "none", once the first bytes are in (None for a
      file too short to tell);
    - `taken`: the file the bytes come from, as errors name it (the masked URL, a local
      file's path);
    - `transfer`: the bytes received and whether the transport vouched for them all;
    - `chosen`: for a URL whose file name is a pattern (sources/names.py), which file it
      took (`file`: its URL, masked; `file_date`: the day its template was rendered for;
      `file_matches`: how many files a glob matched), for the run's details.
    """

    url: FeedUrl
    cap: int  # FEED_WORKER_MAX_FILE_BYTES
    taken: str = ""
    transfer: Transfer = field(default_factory=Transfer)
    validators: dict[str, Any] = field(default_factory=dict)
    link_next: str | None = None
    compression: str | None = None
    chosen: dict[str, Any] = field(default_factory=dict)
    chunks: AsyncIterator[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.taken:
            self.taken = self.url.shown

    def announce(self, length: int | None, *, vouched: bool) -> None:
        """What the transport knows before the bytes: the file's length (Content-Length,
        SIZE, stat), and whether it vouches for the bytes it will give. A file longer than
        the cap fails here, before its bytes are asked for."""
        self.transfer.vouched = vouched
        self.transfer.expected = length
        if length is not None and length > self.cap:
            raise SourceError(f"{self.taken} is {length} bytes, over the {self.cap}-byte cap "
                              "(FEED_WORKER_MAX_FILE_BYTES)")

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self.chunks is None:
            raise RuntimeError("the download has no bytes to give")
        return aiter(self.chunks)

    async def aclose(self) -> None:
        """Stops the download (its connection closed with it)."""
        if self.chunks is not None:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()


async def capped(chunks: AsyncIterator[bytes], download: Download) -> AsyncIterator[bytes]:
    """A transport's bytes, counted into `download.transfer.received`; a file that turns
    out longer than the cap (no length announced, or a wrong one) fails as it passes it."""
    cap, transfer = download.cap, download.transfer
    received = 0
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            received += len(chunk)
            if received > cap:
                raise SourceError(f"{download.taken} passed the {cap}-byte cap "
                                  "(FEED_WORKER_MAX_FILE_BYTES)")
            transfer.received += len(chunk)
            yield chunk
