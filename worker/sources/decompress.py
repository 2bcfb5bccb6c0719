"""gzip and zip feeds, found by their magic bytes and inflated as a stream, with a cap on
the inflated size and on the inflation ratio (a zip or gzip bomb fails its run, in bounded
memory, and early: a bomb under the size cap would otherwise be parsed whole).

The ratio is the bytes inflated so far over the compressed bytes taken in so far (zip: by
the entry's inflater; gzip: handed to the child, which runs up to ~200 KB ahead of its
output, so the ratio seen is a little low and a bomb stops a little later), judged only
once the output passes RATIO_FLOOR_BYTES: a small feed may compress a thousand times (a
column of zeros) and is no threat at that size.

gzip is inflated by a child process (see _GUNZIP), on another core, while this one
parses. A worker thread would make the parsing slower: the two would fight over the
GIL."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Callable

from worker.errors import FeedError, SourceError, TruncatedError
from worker.parsers.sniff import OFFICE_HEAD_BYTES, spreadsheet_kind

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"  # a zip whose first entry is a spreadsheet's part is left whole
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_EXTRA_HEADER = struct.Struct("<HH")  # an extra field's kind and length
_ZIP64_MARK = 0xFFFFFFFF  # a local header's size field: the size is in the zip64 field
_STEP = 1 << 20  # inflate at most this much per call: memory stays flat
# Below this much output the ratio is not judged (16 MiB: a few seconds of parsing).
RATIO_FLOOR_BYTES = 16 * 1024 * 1024
_FEED_STEP = 64 * 1024  # bytes handed to the gzip child at a time (a pipe's capacity)


async def decompressed(chunks: AsyncIterator[bytes], max_bytes: int,
                       entry: str | None = None, *,
                       on_kind: Callable[[str], None] | None = None,
                       max_ratio: int | None = None) -> AsyncIterator[bytes]:
    """The feed's bytes, inflated when they are gzip or zip; `on_kind` is told the format
    ("gzip", "zip", "none") once the first bytes are in.
    Past max_bytes inflated, or max_ratio times the bytes read (None: no ratio limit),
    SourceError. A gzip member or zip entry that the bytes end inside of raises
    TruncatedError: its own framing says the download was cut short. Closing this closes
    the source too (its connection with it)."""
    received = _Received()
    source, chunks = chunks, received.count(chunks)
    async with contextlib.aclosing(source), contextlib.aclosing(chunks):  # type: ignore[type-var]
        head = b""
        async for chunk in chunks:
            head += chunk
            # a zip's first entry name tells a spreadsheet (an XLSX, an ODS) from a zip feed
            if len(head) >= (OFFICE_HEAD_BYTES if head.startswith(ZIP_MAGIC) else 4):
                break
        if len(head) < 4:
            if head:
                yield head
            return

        cap = _Cap(max_bytes, max_ratio)

        async def rest() -> AsyncIterator[bytes]:
            yield head
            async for chunk in chunks:
                yield chunk

        if head.startswith(GZIP_MAGIC):
            kind, stream = "gzip", _gunzip(rest(), cap, received)
        elif head.startswith(ZIP_MAGIC) and (entry is not None
                                             or spreadsheet_kind(head) is None):
            kind, stream = "zip", _unzip(rest(), cap, entry, received)
        else:
            kind, stream = "none", rest()
        if on_kind is not None:
            on_kind(kind)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for data in stream:
                yield data


class _Received:
    """The compressed bytes taken from the source so far (for a truncation's reason)."""

    def __init__(self) -> None:
        self.total = 0

    async def count(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in source:
            self.total += len(chunk)
            yield chunk


class _Cap:
    """The inflated bytes so far (`total`) against the cap and against the bytes read."""

    def __init__(self, max_bytes: int, max_ratio: int | None) -> None:
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.total = 0
        self.read = 0  # compressed bytes taken in by the inflater so far

    def add(self, n: int, read: int = 0) -> None:
        """n more bytes out, for `read` more bytes in."""
        self.read += read
        self.total += n
        if self.total > self.max_bytes:
            raise SourceError(f"the feed inflates past {self.max_bytes} bytes "
                              "(FEED_WORKER_MAX_DECOMPRESSED_BYTES)")
        ratio = self.max_ratio
        if ratio is not None and self.total > RATIO_FLOOR_BYTES and \
                self.total > ratio * self.read:
            raise SourceError(f"the feed inflates more than {ratio} times: {self.read:,} "
                              f"bytes became {self.total:,} bytes so far "
                              "(FEED_WORKER_MAX_INFLATION_RATIO)")


def _inflate(d: zlib._Decompress, data: bytes, cap: _Cap) -> list[bytes]:
    out = []
    while data:
        piece = d.decompress(data, _STEP)
        left = len(d.unconsumed_tail) + (len(d.unused_data) if d.eof else 0)
        cap.add(len(piece), len(data) - left)
        out.append(piece)
        data = d.unconsumed_tail
        if d.eof:
            break
    return out


# The child: gzip on stdin (several members in a row allowed), the bytes on stdout, at most
# _STEP at a time; exit 3 when the stream is cut short, 4 when it is corrupt (the reason on
# stderr). Only the standard library, and nothing of this package: it starts in ~20 ms.
_GUNZIP = f"""
import sys, zlib
STEP = {_STEP}
read, write = sys.stdin.buffer.read1, sys.stdout.buffer.write
d = zlib.decompressobj(zlib.MAX_WBITS | 16)
fed = False
try:
    while data := read(STEP):
        while data:
            fed = True
            while data and not d.eof:
                write(d.decompress(data, STEP))
                data = d.unconsumed_tail
            if d.eof:
                data = d.unused_data
                d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                fed = False
    if fed:
        sys.stderr.write("cut short")
        sys.exit(3)
    sys.stdout.buffer.flush()
except zlib.error as exc:
    sys.stderr.write(str(exc))
    sys.exit(4)
except BrokenPipeError:
    sys.exit(0)  # the reader went away: it knows why
"""


async def _gunzip(chunks: AsyncIterator[bytes], cap: _Cap,
                  received: _Received) -> AsyncIterator[bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", "-c", _GUNZIP, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=_STEP)
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    if stdin is None or stdout is None or stderr is None:  # pragma: no cover - PIPE given
        raise RuntimeError("the gzip child has no pipes")

    async def feed() -> None:
        try:
            async for chunk in chunks:
                # A pipe's worth at a time, counted as handed over: the bytes counted run
                # at most a pipe buffer or two ahead of what the child has inflated.
                view = memoryview(chunk)
                for start in range(0, len(view), _FEED_STEP):
                    piece = view[start:start + _FEED_STEP]
                    cap.read += len(piece)
                    stdin.write(piece)
                    await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child ended first: its exit says why
        finally:
            stdin.close()

    writer = asyncio.create_task(feed(), name="gunzip-feed")
    try:
        while piece := await stdout.read(_STEP):
            cap.add(len(piece))
            yield piece
        await writer  # the source's own error, if it failed, comes first
        code = await proc.wait()
        if code == 3:
            raise TruncatedError(received.total, "the gzip stream ends inside a member")
        if code:
            reason = (await stderr.read()).decode(errors="replace").strip()
            raise FeedError(f"the gzip stream is corrupt: {reason or f'exit {code}'}")
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _unzip(chunks: AsyncIterator[bytes], cap: _Cap, entry: str | None,
                 received: _Received) -> AsyncIterator[bytes]:
    """The named entry, or the first file, of a zip read front to back. Entries in the
    zip64 format are read too: their sizes in the zip64 extra field, and their data
    descriptor's sizes 8 bytes each."""
    buf = b""
    it = aiter(chunks)

    async def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            try:
                buf += await anext(it)
            except StopAsyncIteration:
                raise TruncatedError(received.total, "the zip file ends inside an entry's "
                                     "header or stored data") from None
        taken, buf = buf[:n], buf[n:]
        return taken

    names: list[str] = []
    while True:
        header = await need(4)
        if header != ZIP_MAGIC:
            wanted = f"entry {entry!r}" if entry else "a file"
            raise FeedError(f"the zip file has no {wanted} (entries: {', '.join(names)})")
        (_, _, flags, method, _, _, crc, csize, usize, name_len,
         extra_len) = _LOCAL_HEADER.unpack(header + await need(_LOCAL_HEADER.size - 4))
        name = (await need(name_len)).decode("utf-8" if flags & 0x800 else "cp437")
        zip64, csize, usize = _zip64_sizes(await need(extra_len), csize, usize, name)
        names.append(name)
        take = not name.endswith("/") and (entry is None or name == entry)
        if method not in (0, 8):
            raise FeedError(f"zip entry {name!r} uses compression method {method}; "
                            "only stored and deflated entries are read")
        if method == 0 and flags & 0x08:
            raise FeedError(f"zip entry {name!r} is stored with no size in its header")
        got = 0  # the CRC-32 of the taken entry's bytes, checked against the zip's own
        size = 0  # and their number, against the entry's size
        consumed = csize  # compressed bytes of the entry (deflated: counted as read)
        if method == 0:
            remaining = csize
            while remaining:
                piece = await need(min(remaining, _STEP))
                remaining -= len(piece)
                if take:
                    cap.add(len(piece), len(piece))
                    got = zlib.crc32(piece, got)
                    size += len(piece)
                    yield piece
        else:
            d = zlib.decompressobj(-zlib.MAX_WBITS)
            consumed = 0
            try:
                while not d.eof:
                    if not buf:
                        try:
                            buf = await anext(it)
                        except StopAsyncIteration:
                            raise TruncatedError(received.total, f"zip entry {name!r} ends "
                                                 "inside its deflated data") from None
                    data, buf = buf, b""
                    if take:
                        for piece in _inflate(d, data, cap):
                            if piece:
                                got = zlib.crc32(piece, got)
                                size += len(piece)
                                yield piece
                    else:
                        size += _skip(d, data)
                    consumed += len(data) - len(d.unused_data)
                    buf = d.unused_data + buf
            except zlib.error as exc:
                raise FeedError(f"zip entry {name!r} is corrupt: {exc}") from None
        if flags & 0x08:
            # A data descriptor follows the data: an optional signature, the CRC-32, then
            # the two sizes (8 bytes each in the zip64 format, else 4).
            sig = await need(4)
            if sig == b"PK\x07\x08":
                sig = await need(4)
            crc = int.from_bytes(sig, "little")
            # Some writers (Java's) give no zip64 extra field and still write 8-byte sizes
            # once an entry passes 4 GiB.
            width = 8 if zip64 or max(size, consumed) > _ZIP64_MARK else 4
            sizes = await need(2 * width)
            usize = int.from_bytes(sizes[width:], "little")
        if take:
            if got != crc:
                raise FeedError(f"zip entry {name!r} is corrupt: its bytes' CRC-32 is "
                                f"{got:08x}, the zip says {crc:08x}")
            if size != usize:
                raise FeedError(f"zip entry {name!r} is corrupt: it inflates to {size:,} "
                                f"bytes, the zip says {usize:,}")
            return


def _zip64_sizes(extra: bytes, csize: int, usize: int,
                 name: str) -> tuple[bool, int, int]:
    """(zip64, compressed size, size) of a local header: a header field of 0xFFFFFFFF
    stands for the 8-byte value in the zip64 extra field (0x0001; the size first, then
    the compressed size, each present only when its field says so). An entry with that
    extra field has a data descriptor with 8-byte sizes."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = _EXTRA_HEADER.unpack_from(extra, at)
        body = extra[at + 4:at + 4 + length]
        at += 4 + length
        if kind != 0x0001:
            continue
        values = [int.from_bytes(body[i:i + 8], "little")
                  for i in range(0, len(body) - len(body) % 8, 8)]
        wanted = [usize == _ZIP64_MARK, csize == _ZIP64_MARK]
        if len(values) < sum(wanted):
            raise FeedError(f"zip entry {name!r} has a zip64 extra field too short for "
                            "its sizes")
        if wanted[0]:
            usize = values.pop(0)
        if wanted[1]:
            csize = values.pop(0)
        return True, csize, usize
    if _ZIP64_MARK in (csize, usize):
        raise FeedError(f"zip entry {name!r} gives its size as 0xFFFFFFFF without a zip64 "
                        "extra field")
    return False, csize, usize


def _skip(d: zlib._Decompress, data: bytes) -> int:
    """Inflate an entry that is not taken, for its length only (the bytes inflated)."""
    n = 0
    while data and not d.eof:
        n += len(d.decompress(data, _STEP))
        data = d.unconsumed_tail
    return n
