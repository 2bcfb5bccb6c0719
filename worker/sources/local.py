"""Local files (`file:///abs/path`), for `feed-worker import`: read off the event loop."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from typing import BinaryIO

from worker.errors import FeedError, SourceError, TransientSourceError, TruncatedError
from worker.settings import Settings
from worker.sources.download import Download
from worker.urls import FeedUrl

CHUNK_BYTES = 1 << 20


def _path_of(u: FeedUrl) -> str:
    shown = u.shown
    if u.scheme != "file":
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


async def file_stream(url: FeedUrl, settings: Settings, *,
                      download: Download | None = None) -> AsyncIterator[bytes]:
    """The file named by a file:// URL, in chunks of 1 MiB (the last one shorter); the
    download takes its path as the file's name. `download.transfer.vouched`: a regular
    file, whose size at open the bytes read must match (a file rewritten as it is read
    fails); a pipe or device is not vouched for. A file over the cap fails at open."""
    download = download if download is not None else Download(url, settings.max_file_bytes)
    path = _path_of(url)
    download.taken = path
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
        download.announce(size, vouched=size is not None)
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
            yield chunk
    finally:
        f.close()
