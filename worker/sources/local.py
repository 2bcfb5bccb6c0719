"""Local files (`file:///abs/path`), for `feed-worker import`: read off the event loop."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from typing import BinaryIO

from yarl import URL

from worker.errors import FeedError, SourceError, TransientSourceError, TruncatedError
from worker.settings import Settings
from worker.sources.transfer import Transfer
from worker.urls import mask

CHUNK_BYTES = 1 << 20


def _path_of(url: str) -> str:
    shown = mask(url)
    try:
        u = URL(url)
    except (ValueError, TypeError):
        raise FeedError(f"feed URL {shown} cannot be parsed") from None
    if u.scheme.lower() != "file":
        raise FeedError(f"feed URL {shown} is not a file:// URL")
    if u.host not in (None, "", "localhost"):
        raise FeedError(f"feed URL {shown} names another host; file:// URLs are local only")
    path = u.path
    if not path.startswith("/") or path == "/":
        raise FeedError(f"feed URL {shown} needs an absolute path (file:///abs/path)")
    if "\0" in path:
        raise FeedError(f"feed URL {shown} has a NUL character in its path")
    return path


def _open(path: str) -> tuple[BinaryIO, int | None]:
    """The open file and its size (None when it is not a regular file: a pipe, say)."""
    f = open(path, "rb")  # noqa: SIM115 (closed by file_stream)
    try:
        info = os.fstat(f.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(21, "Is a directory")
    except BaseException:
        f.close()
        raise
    return f, info.st_size if stat.S_ISREG(info.st_mode) else None


async def file_stream(url: str, settings: Settings, *,
                      transfer: Transfer | None = None) -> AsyncIterator[bytes]:
    """The file named by a file:// URL, in chunks of 1 MiB (the last one shorter).
    `transfer.vouched`: a regular file, whose size at open the bytes read must match (a
    file rewritten as it is read fails); a pipe or device is not vouched for."""
    path = _path_of(url)
    cap = settings.max_file_bytes
    try:
        f, size = await asyncio.to_thread(_open, path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path} is a directory, not a file") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None
    except OSError as exc:
        raise SourceError(f"{path} cannot be opened: {exc.strerror or exc}") from None
    try:
        if size is not None and size > cap:
            raise SourceError(
                f"{path} is {size} bytes, over the {cap}-byte cap (FEED_WORKER_MAX_FILE_BYTES)"
            )
        if transfer is not None:
            transfer.vouched = size is not None
            transfer.expected = size
        received = 0
        while True:
            try:
                chunk = await asyncio.to_thread(f.read, CHUNK_BYTES)
            except OSError as exc:
                raise SourceError(f"reading {path} failed: {exc.strerror or exc}") from None
            if not chunk:
                if size is not None and received < size:
                    raise TruncatedError(received, f"{path} was {size:,} bytes when opened")
                if size is not None and received > size:
                    raise TransientSourceError(f"{path} changed while it was read: "
                                               f"{received} bytes read, {size} when opened")
                return
            received += len(chunk)
            if received > cap:
                raise SourceError(f"{path} passed the {cap}-byte cap (FEED_WORKER_MAX_FILE_BYTES)")
            yield chunk
    finally:
        f.close()
