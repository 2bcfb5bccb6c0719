"""gzip and zip feeds inflated as a stream, by magic bytes, with a cap on the size and on
the inflation ratio."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import AsyncIterator

import pytest

from worker.errors import FeedError, SourceError, TruncatedError
from worker.sources.decompress import RATIO_FLOOR_BYTES, decompressed

DATA = b"external_id,qty\n" + b"".join(b"K%d,%d\n" % (i, i) for i in range(20000))


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def inflate(data: bytes, size: int = 4096, cap: int = 10**9,
                  entry: str | None = None, ratio: int | None = None) -> tuple[bytes, str]:
    found: list[str] = []
    stream = decompressed(chunked(data, size), cap, entry, on_kind=found.append,
                          max_ratio=ratio)
    out = b"".join([c async for c in stream])
    return out, found[0] if found else "none"


class _Sink:
    """Where a zip is written as a stream is: no seeking back, so each entry's sizes and
    CRC-32 follow its data (a data descriptor) instead of standing in its header."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def flush(self) -> None:
        pass


def zipped(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED,
           stream: bool = False, zip64: bool = False) -> bytes:
    """A zip of the files; `stream`: written to an unseekable sink (data descriptors);
    `zip64`: every entry in the zip64 format (sizes in the zip64 extra field, a data
    descriptor's sizes 8 bytes each), as zipfile writes entries over 4 GiB."""
    sink = _Sink()
    out: io.BytesIO | _Sink = sink if stream else io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as z:  # type: ignore[arg-type]
        for name, data in files.items():
            if stream or zip64:  # stream: no sizes in the header (a data descriptor follows)
                info = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0))
                info.compress_type = method
                with z.open(info, "w", force_zip64=zip64) as f:
                    f.write(data)
            else:
                z.writestr(name, data)
    return bytes(sink.buf) if stream else out.getvalue()  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
async def test_plain_bytes_pass_through(size: int) -> None:
    assert await inflate(DATA, size) == (DATA, "none")


@pytest.mark.parametrize("size", [1, 13, 4096, 1 << 20])
async def test_gzip(size: int) -> None:
    assert await inflate(gzip.compress(DATA), size) == (DATA, "gzip")


async def test_gzip_of_several_members() -> None:
    data = gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:])
    assert await inflate(data, 100) == (DATA, "gzip")


async def test_a_cut_gzip_fails_as_truncated() -> None:
    """Its own framing tells a cut stream (a retry may get all of it)."""
    data = gzip.compress(DATA)
    for cut in (len(data) - 100, len(data) - 1, 20):
        with pytest.raises(TruncatedError) as caught:
            await inflate(data[:cut])
        assert str(caught.value) == (f"the download was cut short: {cut:,} bytes received, "
                                     "the gzip stream ends inside a member")


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
async def test_a_cut_zip_fails_as_truncated(method: int) -> None:
    data = zipped({"feed.csv": DATA}, method)
    start = data.index(b"feed.csv") + len(b"feed.csv")  # the entry's data follows its name
    for cut in (start - 3, start + 10, start + (data.index(b"PK\x01\x02") - start) // 2):
        with pytest.raises(TruncatedError, match=f"^the download was cut short: {cut:,} "
                                                 "bytes received, (the zip file|zip entry)"):
            await inflate(data[:cut], 1000)
    # Cut after the entry's data (in the central directory): the entry is whole.
    assert await inflate(data[:-10]) == (DATA, "zip")


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


# --- the inflation ratio -----------------------------------------------------------------

MiB = 1 << 20


@functools.cache
def gzip_of_zeros(size: int) -> bytes:
    """`size` zero bytes as gzip, compressed a MiB at a time (about 1000 times smaller)."""
    z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(MiB)
    parts = [z.compress(zeros) for _ in range(size // MiB)]
    return b"".join([*parts, z.compress(bytes(size % MiB)), z.flush()])


@functools.cache
def zip_of_zeros(size: int) -> bytes:
    """`size` zero bytes (whole MiBs) as a deflated zip entry, written as a stream."""
    info = zipfile.ZipInfo("bomb.csv")
    info.compress_type = zipfile.ZIP_DEFLATED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, z.open(info, "w") as f:
        for _ in range(size // MiB):
            f.write(bytes(MiB))
    return buf.getvalue()


RATIO_ERROR = re.compile(r"the feed inflates more than 100 times: ([\d,]+) bytes became "
                         r"([\d,]+) bytes so far \(FEED_WORKER_MAX_INFLATION_RATIO\)")


@pytest.mark.parametrize("kind", ["gzip", "zip"])
@pytest.mark.parametrize("size", [4096, 64 * 1024, MiB])
async def test_a_bomb_under_the_cap_fails_on_its_ratio(kind: str, size: int) -> None:
    """256 MiB of zeros (~1000 times) under a 1 GB cap: stopped once past the floor, long
    before the end, with the sizes it had seen."""
    bomb = gzip_of_zeros(256 * MiB) if kind == "gzip" else zip_of_zeros(256 * MiB)
    assert len(bomb) * 500 < 256 * MiB
    with pytest.raises(SourceError) as caught:
        await inflate(bomb, size, cap=10**9, ratio=100)
    match = RATIO_ERROR.fullmatch(str(caught.value))
    assert match is not None, str(caught.value)
    read, became = (int(g.replace(",", "")) for g in match.groups())
    assert RATIO_FLOOR_BYTES < became <= 64 * MiB
    assert 0 < read <= len(bomb)
    assert became > 100 * read


@pytest.mark.parametrize("kind", ["gzip", "zip"])
async def test_a_highly_compressible_feed_under_the_ratio_passes(kind: str) -> None:
    """Rows that repeat all but their number: ~40 times smaller, over the floor."""
    rows = b"".join(b"SKU-%09d,5,In stock at the central warehouse; ships in 2 days,"
                    b"EUR,0.00,,,,,,,,,,,,,,,,,,,,,,,,,\n" % (i % 1000) for i in range(300_000))
    packed = gzip.compress(rows) if kind == "gzip" else zipped({"feed.csv": rows})
    assert len(rows) > RATIO_FLOOR_BYTES
    assert 20 < len(rows) / len(packed) < 100, len(rows) / len(packed)
    assert await inflate(packed, 64 * 1024, ratio=100) == (rows, kind)


@pytest.mark.parametrize("kind", ["gzip", "zip"])
async def test_the_ratio_is_judged_only_past_the_floor(kind: str) -> None:
    """Zeros compress ~1000 times: up to the floor they pass, a little more fails."""
    make = gzip_of_zeros if kind == "gzip" else zip_of_zeros
    small = make(RATIO_FLOOR_BYTES)
    assert len(small) * 500 < RATIO_FLOOR_BYTES
    assert await inflate(small, 64 * 1024, ratio=100) == (bytes(RATIO_FLOOR_BYTES), kind)
    assert await inflate(make(MiB), ratio=100) == (bytes(MiB), kind)
    with pytest.raises(SourceError, match=RATIO_ERROR):
        await inflate(make(RATIO_FLOOR_BYTES + 2 * MiB), 64 * 1024, ratio=100)


async def test_the_size_cap_still_comes_first() -> None:
    with pytest.raises(SourceError, match="inflates past 1000000 bytes"):
        await inflate(gzip_of_zeros(64 * MiB), cap=1_000_000, ratio=100)


async def test_plain_bytes_have_no_ratio() -> None:
    data = bytes(RATIO_FLOOR_BYTES + MiB)
    assert await inflate(data, MiB, ratio=1) == (data, "none")


def _corrupt_crc(data: bytes, stream: bool) -> bytes:
    """The zip with its first entry's CRC-32 changed where a reader checks it: the local
    header's, or (stream) the data descriptor's after the entry's data."""
    out = bytearray(data)
    # the local header's CRC-32 follows signature 4, version 2, flags 2, method 2, time 4
    at = data.index(b"PK\x07\x08") + 4 if stream else 14
    out[at] ^= 0xFF
    return bytes(out)


# (a stored entry needs its size in its header: one streamed is refused before its CRC)
@pytest.mark.parametrize(("method", "stream"), [(zipfile.ZIP_DEFLATED, False),
                                                (zipfile.ZIP_STORED, False),
                                                (zipfile.ZIP_DEFLATED, True)])
async def test_a_zip_entry_whose_bytes_fail_their_crc_fails_the_run(method: int,
                                                                   stream: bool) -> None:
    data = zipped({"feed.csv": DATA, "other.csv": b"x"}, method, stream=stream)
    assert await inflate(data) == (DATA, "zip")  # as written: checked and good
    with pytest.raises(FeedError, match=r"zip entry 'feed.csv' is corrupt: its bytes' "
                                        r"CRC-32 is [0-9a-f]{8}, the zip says [0-9a-f]{8}"):
        await inflate(_corrupt_crc(data, stream))


ZIP64_EXTRA = b"\x01\x00\x10\x00"  # a local header's zip64 field: kind 1, 16 bytes


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("size", [1, 999, 1 << 20])
async def test_a_zip64_entry_is_read_with_its_sizes_from_the_extra_field(method: int,
                                                                         size: int) -> None:
    data = zipped({"feed.csv": DATA, "other.csv": b"x"}, method, zip64=True)
    # really zip64: the header's sizes are 0xFFFFFFFF, the real ones in the extra field
    assert data[18:26] == b"\xff" * 8
    assert data[30 + len("feed.csv"):][:4] == ZIP64_EXTRA
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.read("feed.csv") == DATA
    assert await inflate(data, size) == (DATA, "zip")


@pytest.mark.parametrize("size", [1, 333, 1 << 20])
async def test_a_skipped_zip64_entry_with_a_data_descriptor_of_8_byte_sizes(
        size: int) -> None:
    first = b"not this\n" * 1000
    data = zipped({"a.csv": first, "b.csv": DATA}, stream=True, zip64=True)
    # the first entry's descriptor: signature, CRC-32, then two 8-byte sizes, and the
    # next entry's header right after it
    at = data.index(b"PK\x07\x08")
    assert int.from_bytes(data[at + 16:at + 24], "little") == len(first)
    assert data[at + 24:at + 28] == b"PK\x03\x04"
    assert await inflate(data, size, entry="b.csv") == (DATA, "zip")
    assert await inflate(data, size) == (first, "zip")


async def test_a_zip64_entry_that_fails_its_crc_or_size_fails_the_run() -> None:
    data = zipped({"feed.csv": DATA}, stream=True, zip64=True)
    with pytest.raises(FeedError, match=r"zip entry 'feed.csv' is corrupt: its bytes' "
                                        r"CRC-32 is [0-9a-f]{8}, the zip says"):
        await inflate(_corrupt_crc(data, stream=True))
    wrong = bytearray(data)
    at = data.index(b"PK\x07\x08") + 16  # the descriptor's (uncompressed) size
    wrong[at:at + 8] = (len(DATA) + 1).to_bytes(8, "little")
    with pytest.raises(FeedError, match=f"zip entry 'feed.csv' is corrupt: it inflates to "
                                        f"{len(DATA):,} bytes, the zip says {len(DATA) + 1:,}"):
        await inflate(bytes(wrong))


async def test_a_zip64_size_without_its_extra_field_fails_the_run() -> None:
    data = bytearray(zipped({"feed.csv": DATA}, zipfile.ZIP_STORED, zip64=True))
    name_end = 30 + len("feed.csv")
    data[name_end:name_end + 2] = b"\x99\x99"  # the zip64 field becomes an unknown one
    with pytest.raises(FeedError, match="gives its size as 0xFFFFFFFF without a zip64"):
        await inflate(bytes(data))
