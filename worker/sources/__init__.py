"""Feed sources: a URL in, an async iterator of byte chunks out, with guard rails."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Protocol

from yarl import URL

from worker.errors import FeedError, NotModified
from worker.settings import Settings
from worker.sources.guard import Policy
from worker.sources.http import http_stream
from worker.sources.local import file_stream
from worker.sources.transfer import Transfer
from worker.urls import mask

SCHEMES = ("http", "https", "ftp", "ftps", "sftp", "file (feed-worker import --url only)")


def open_source(url: str, settings: Settings, *, local_files: bool = False,
                previous: dict[str, Any] | None = None, seen: dict[str, Any] | None = None,
                token: str | None = None, transfer: Transfer | None = None
                ) -> AsyncIterator[bytes]:
    """The bytes at the URL. file:// only where a person asked for it (feed-worker import
    --url), never for a URL that came from a feed's settings or a message. With `previous`
    validators of the last read, an unchanged file raises NotModified (HTTP: ETag and
    Last-Modified; FTP/SFTP: size and modification time); `seen` gets this read's.
    `transfer` learns the bytes received and whether the transport vouched for them all;
    a download shorter than the length the transport announced raises TruncatedError."""
    transfer = transfer if transfer is not None else Transfer()
    return _counted(_open(url, settings, local_files, previous, seen, token, transfer),
                    transfer)


def _open(url: str, settings: Settings, local_files: bool, previous: dict[str, Any] | None,
          seen: dict[str, Any] | None, token: str | None, transfer: Transfer
          ) -> AsyncIterator[bytes]:
    try:
        scheme = URL(url).scheme.lower()
    except (ValueError, TypeError):
        raise FeedError(f"feed URL {mask(url)} cannot be parsed") from None
    if scheme in ("http", "https"):
        return http_stream(url, settings, previous=previous, seen=seen, token=token,
                           transfer=transfer)
    # FTP and SFTP clients are imported when a feed needs them: asyncssh alone adds about
    # 0.1 s to the start of every `feed-worker import` (measured).
    if scheme in ("ftp", "ftps"):
        from worker.sources.ftp import ftp_stat, ftp_stream

        return _guarded(url, settings, ftp_stream, ftp_stat, previous, seen, transfer)
    if scheme == "sftp":
        from worker.sources.sftp import sftp_stat, sftp_stream

        known_hosts = os.path.expanduser(settings.sftp_known_hosts)
        return _guarded(url, settings, functools.partial(sftp_stream, known_hosts=known_hosts),
                        functools.partial(sftp_stat, known_hosts=known_hosts), previous, seen,
                        transfer)
    if scheme == "file" and local_files:
        return file_stream(url, settings, transfer=transfer)
    raise FeedError(
        f"feed URL {mask(url)}: scheme {scheme or '(none)'!r} is not supported "
        f"(supported: {', '.join(SCHEMES)})"
    )


class Stream(Protocol):
    """ftp_stream / sftp_stream: the file's bytes, from the checked addresses."""

    def __call__(self, url: str, settings: Settings, *, addresses: Sequence[str] | None = None,
                 transfer: Transfer | None = None) -> AsyncIterator[bytes]: ...


class Stat(Protocol):
    """ftp_stat / sftp_stat: (size, modification time), from the checked addresses."""

    def __call__(self, url: str, settings: Settings, *, addresses: Sequence[str] | None = None
                 ) -> Awaitable[tuple[int | None, str | None]]: ...


async def _guarded(url: str, settings: Settings, stream: Stream, stat: Stat,
                   previous: dict[str, Any] | None, seen: dict[str, Any] | None,
                   transfer: Transfer) -> AsyncIterator[bytes]:
    """FTP(S) and SFTP: the host must resolve to allowed addresses only, and the client
    connects to exactly those addresses (no second lookup that DNS rebinding could
    answer differently), as the HTTP client does through GuardedResolver."""
    u = URL(url)
    policy = Policy(settings.networks())
    policy.check_literal(u.host or "")
    addresses = [address for _, address in await policy.resolve(u.host or "", u.port or 0)]
    if previous is not None or seen is not None:
        size, mtime = await stat(url, settings, addresses=addresses)
        if previous and size is not None and mtime is not None and \
                (previous.get("size"), previous.get("mtime")) == (size, mtime):
            raise NotModified(f"{mask(url)} is unchanged (size {size}, modified {mtime})")
        if seen is not None:
            seen.update(size=size, mtime=mtime)
    inner = stream(url, settings, addresses=addresses, transfer=transfer)
    async with contextlib.aclosing(inner):  # type: ignore[type-var]
        async for chunk in inner:
            yield chunk


async def _counted(chunks: AsyncIterator[bytes], transfer: Transfer) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            transfer.received += len(chunk)
            yield chunk
