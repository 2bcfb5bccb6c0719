"""gzip and zip feeds inflated as a stream, by magic bytes, with a cap on the size."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import zipfile
from collections.abc import AsyncIterator

import pytest

from worker.errors import FeedError, SourceError
from worker.sources.decompress import decompressed

DATA = b"external_id,qty\n" + b"".join(b"K%d,%d\n" % (i, i) for i in range(20000))


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def inflate(data: bytes, size: int = 4096, cap: int = 10**9,
                  entry: str | None = None) -> tuple[bytes, str]:
    found: list[str] = []
    out = b"".join([c async for c in decompressed(chunked(data, size), cap, entry, found)])
    return out, found[0] if found else "none"


def zipped(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED,
           stream: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in files.items():
            if stream:  # written without sizes in the header (a data descriptor follows)
                with z.open(zipfile.ZipInfo(name), "w") as f:
                    f.write(data)
            else:
                z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
async def test_plain_bytes_pass_through(size: int) -> None:
    assert await inflate(DATA, size) == (DATA, "none")


@pytest.mark.parametrize("size", [1, 13, 4096, 1 << 20])
async def test_gzip(size: int) -> None:
    assert await inflate(gzip.compress(DATA), size) == (DATA, "gzip")


async def test_gzip_of_several_members() -> None:
    data = gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:])
    assert await inflate(data, 100) == (DATA, "gzip")


async def test_a_cut_gzip_fails() -> None:
    with pytest.raises(FeedError, match="cut short"):
        await inflate(gzip.compress(DATA)[:-100])


async def test_a_gzip_bomb_fails_at_the_cap() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB of zeros in ~50 KB
    with pytest.raises(SourceError, match="inflates past 1000000 bytes"):
        await inflate(bomb, cap=1_000_000)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("size", [1, 999, 1 << 20])
async def test_zip_first_file(method: int, size: int) -> None:
    data = zipped({"dir/": b"", "feed.csv": DATA, "other.csv": b"x"}, method)
    assert await inflate(data, size) == (DATA, "zip")


async def test_zip_named_entry_even_after_streamed_ones() -> None:
    data = zipped({"a.csv": b"not this\n" * 1000, "b.csv": DATA}, stream=True)
    assert await inflate(data, 333, entry="b.csv") == (DATA, "zip")


async def test_zip_without_the_named_entry() -> None:
    with pytest.raises(FeedError, match=r"no entry 'c.csv' \(entries: a.csv\)"):
        await inflate(zipped({"a.csv": DATA}), entry="c.csv")


async def test_a_zip_bomb_fails_at_the_cap() -> None:
    with pytest.raises(SourceError, match="inflates past"):
        await inflate(zipped({"z.csv": b"\0" * 20_000_000}), cap=1_000_000)


async def test_empty_and_tiny_inputs() -> None:
    assert await inflate(b"") == (b"", "none")
    assert await inflate(b"ab") == (b"ab", "none")


BIG = b"".join(b"K%d,%d,%s\n" % (i, i * 7 % 1000, b"x" * (i % 50)) for i in range(400_000))


@pytest.mark.parametrize("size", [64 * 1024, 1 << 20])
async def test_large_inputs_inflate_in_order(size: int) -> None:
    assert len(BIG) > 8 * (1 << 20)  # many inflating steps, each at most 1 MiB
    assert await inflate(gzip.compress(BIG), size) == (BIG, "gzip")
    assert await inflate(zipped({"big.csv": BIG}), size) == (BIG, "zip")
    assert await inflate(zipped({"a.csv": BIG, "b.csv": DATA}), size, entry="b.csv") == (
        DATA, "zip")


async def test_a_gzip_bomb_in_large_chunks_fails_at_the_cap() -> None:
    bomb = gzip.compress(b"\0" * 200_000_000)  # ~200 KB, in one chunk
    with pytest.raises(SourceError, match="inflates past 1000000 bytes"):
        await inflate(bomb, size=1 << 20, cap=1_000_000)


async def test_a_reader_that_stops_early_stops_the_inflating() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunked(gzip.compress(BIG), 64 * 1024):
                yield chunk
        finally:
            closed.set()

    stream = decompressed(source(), 10**9)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        first = await anext(stream)
    assert BIG.startswith(first)
    assert closed.is_set()  # the source was closed with the stream (its connection too)


async def test_a_corrupt_gzip_fails_with_the_reason() -> None:
    data = bytearray(gzip.compress(BIG))
    data[5000:5100] = bytes(100)  # zeros in the middle of the deflate stream
    with pytest.raises(FeedError, match=r"the gzip stream is corrupt: .+"):
        await inflate(bytes(data), 64 * 1024)


async def test_a_source_that_fails_mid_gzip_fails_with_its_own_error() -> None:
    async def source() -> AsyncIterator[bytes]:
        data = gzip.compress(BIG)
        yield data[:200_000]
        raise SourceError("the connection dropped")

    with pytest.raises(SourceError, match="the connection dropped"):
        async for _ in decompressed(source(), 10**9):
            pass
