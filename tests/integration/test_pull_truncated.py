"""A download cut short fails its run as truncated, naming the bytes received, and changes
nothing: not one item written or zeroed, though the feed has cleanup on (the run fails
before the merge, so before the circuit breaker, whose limits a cut file may pass).

Servers on loopback that misbehave on purpose: raw-socket HTTP (tests/support/rawhttp.py),
an FTP server whose transfers end early, SFTP and local files that shrink as they are read.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.ftpserver import FTPTestServer
from tests.support.rawhttp import RawHttpServer
from tests.support.sftpserver import SFTPTestServer
from worker.errors import TransientSourceError, TruncatedError
from worker.settings import Settings
from worker.sources import open_source
from worker.sources.download import Download
from worker.sources.local import file_stream
from worker.sources.sftp import sftp_stream
from worker.urls import FeedUrl

N = 1000
ROWS = [(f"K{i:04d}", i % 50 + 1, f"item {i}") for i in range(N)]
CSV = b"external_id,qty,name,retail_price\n" + b"".join(
    b"%s,%d,%s,13.74\n" % (sku.encode(), qty, name.encode()) for sku, qty, name in ROWS)
XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<catalog>\n' + b"".join(
    b"<item><sku>%s</sku><qty>%d</qty><name>%s</name><price>13.74</price></item>\n"
    % (sku.encode(), qty, name.encode()) for sku, qty, name in ROWS) + b"</catalog>\n")
JSON = orjson.dumps([{"sku": sku, "qty": qty, "name": name, "price": 13.74}
                     for sku, qty, name in ROWS], option=orjson.OPT_APPEND_NEWLINE)
FIELDS = {"externalId": "sku", "inventoryQuantity": "qty", "name": "name",
          "retailPrice": "price"}
KINDS: dict[str, tuple[bytes, dict[str, Any]]] = {
    "csv": (CSV, {}),
    "xml": (XML, {"resource_type": "xml",
                  "mapping": {"record": "/catalog/item", "fields": FIELDS}}),
    "json": (JSON, {"resource_type": "json", "mapping": {"fields": FIELDS}}),
}


@pytest.fixture
async def raw() -> AsyncIterator[RawHttpServer]:
    server = RawHttpServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def seeded(pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer,
                 kind: str = "csv") -> int:
    """A feed with cleanup on and its N items stored by a whole download."""
    body, columns = KINDS[kind]
    url = raw.add(f"/{kind}/whole", body, framing="length")
    feed_id = await feeds.make_feed(pool, url, fetch_cleanup="enabled", **columns)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == N
    return feed_id


def quick(settings: Settings) -> Settings:
    return replace(settings, retry_base_s=0.05, retry_cap_s=0.1)


async def fails_as_truncated(pool: asyncpg.Pool, settings: Settings, feed_id: int,
                             url: str, received: int, why: str) -> dict[str, Any]:
    """Tried again (transient) as often as the settings say, cut short each time."""
    before = await feeds.table_state(pool)
    run = await feeds.pull_once(pool, quick(settings), feed_id, url)
    assert run["status"] == "failed"
    assert run["error"].startswith(
        f"gave up after {settings.pull_retry_attempts} attempts: TruncatedError: the "
        f"download was cut short: {received:,} bytes received, {why}"), run["error"]
    assert await feeds.table_state(pool) == before  # nothing written, nothing zeroed
    assert (run["zeroed"], run["updated"], run["inserted"]) == (0, 0, 0)
    return run


def mid_line(body: bytes, share: float) -> int:
    """A length near `share` of the body that does not end a line."""
    cut = int(len(body) * share)
    while body[cut - 1:cut] == b"\n":
        cut += 1
    return cut


@pytest.mark.parametrize("kind", KINDS)
async def test_a_body_delimited_by_close_cut_at_70_percent(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer, kind: str) -> None:
    """The issue's case: no Content-Length, the connection closed at 70%, with breaker
    limits that alone would let the cut file through (it zeroes 30% of the items)."""
    settings = replace(settings, cleanup_max_zeroed_share=0.5, breaker_max_rows_drop=0.5,
                       breaker_max_bytes_drop=0.5)
    feed_id = await seeded(pool, settings, raw, kind)
    body = KINDS[kind][0]
    cut = mid_line(body, 0.7)
    why = {"csv": "the last line has no line break",
           "xml": "the document's root element is not closed (libxml2 at line",
           "json": "the JSON document is not closed (premature EOF"}[kind]
    run = await fails_as_truncated(pool, settings, feed_id,
                                   raw.add("/cut", body, cut=cut), cut, why)
    assert run["bytes"] == cut


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_cut_inside_the_last_field(pool: asyncpg.Pool, settings: Settings,
                                         raw: RawHttpServer, kind: str, version: str) -> None:
    """13.74 cut to 13.7 is not stored: the run fails, the price stays."""
    feed_id = await seeded(pool, settings, raw, kind)
    body = KINDS[kind][0]
    cut = body.rindex(b"13.74") + 4
    await fails_as_truncated(pool, settings, feed_id,
                             raw.add("/cut", body, cut=cut, version=version), cut, "the ")
    prices = {i["retail_price"] for i in (await feeds.items(pool, feed_id)).values()}
    assert prices == {Decimal("13.74")}


async def test_a_content_length_longer_than_the_body(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer) -> None:
    feed_id = await seeded(pool, settings, raw)
    cut = len(CSV) * 7 // 10
    await fails_as_truncated(pool, settings, feed_id,
                             raw.add("/short", CSV, framing="length", cut=cut), cut,
                             f"the response's Content-Length is {len(CSV):,} bytes")
    # Cut at a line's end: the CSV looks whole, the length says otherwise.
    cut = CSV.index(b"\n", cut) + 1
    await fails_as_truncated(pool, settings, feed_id,
                             raw.add("/short2", CSV, framing="length", cut=cut), cut,
                             "the response's Content-Length")


@pytest.mark.parametrize("share", [0.7, 1.0])
async def test_a_chunked_body_without_its_last_chunk(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer, share: float) -> None:
    """Cut between chunks, even after all of the data: the terminator is missing."""
    feed_id = await seeded(pool, settings, raw)
    cut = int(len(CSV) * share)
    await fails_as_truncated(pool, settings, feed_id,
                             raw.add("/chunks", CSV, framing="chunked", cut=cut, piece=4096),
                             cut, "the chunked body ended before its last chunk")


@pytest.mark.parametrize(("framing", "version"), [("close", "1.1"), ("close", "1.0"),
                                                  ("chunked", "1.1"), ("length", "1.1")])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_whole_body_succeeds_however_it_is_framed(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer, kind: str, framing: str,
        version: str) -> None:
    feed_id = await seeded(pool, settings, raw, kind)
    body = KINDS[kind][0].replace(b"13.74", b"13.75")
    url = raw.add("/whole", body, framing=framing, version=version)
    run = await feeds.pull_once(pool, settings, feed_id, url)
    assert run["status"] == "succeeded", run["error"]
    assert (run["updated"], run["zeroed"]) == (N, 0)


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_csv_without_its_final_line_break_succeeds_when_its_length_is_vouched(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer, framing: str) -> None:
    """Many real files lack it; the CSV rule applies only where the transport cannot
    vouch for the length."""
    feed_id = await seeded(pool, settings, raw)
    body = CSV.replace(b"13.74", b"13.75").rstrip(b"\n")
    run = await feeds.pull_once(pool, settings, feed_id,
                                raw.add("/nolf", body, framing=framing))
    assert run["status"] == "succeeded", run["error"]
    assert (run["updated"], run["zeroed"]) == (N, 0)
    await fails_as_truncated(pool, settings, feed_id, raw.add("/nolf-close", body), len(body),
                             "the last line has no line break")


async def test_gzip_vouches_for_its_own_end(pool: asyncpg.Pool, settings: Settings,
                                            raw: RawHttpServer) -> None:
    """Delimited by close: a cut gzip stream is truncated; a whole one is whole, its CSV
    with or without the final line break."""
    feed_id = await seeded(pool, settings, raw)
    packed = gzip.compress(CSV.replace(b"13.74", b"13.75").rstrip(b"\n"))
    cut = len(packed) * 7 // 10
    await fails_as_truncated(pool, settings, feed_id, raw.add("/gz-cut", packed, cut=cut), cut,
                             "the gzip stream ends inside a member")
    run = await feeds.pull_once(pool, settings, feed_id, raw.add("/gz", packed))
    assert run["status"] == "succeeded", run["error"]
    assert (run["updated"], run["zeroed"]) == (N, 0)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_retry_that_gets_the_whole_file_succeeds(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer, kind: str) -> None:
    feed_id = await seeded(pool, settings, raw, kind)
    body = KINDS[kind][0].replace(b"13.74", b"13.75")
    url = raw.add("/flaky", body, cut=mid_line(body, 0.7), cut_requests=1)
    run = await feeds.pull_once(pool, quick(settings), feed_id, url)
    assert run["status"] == "succeeded", run["error"]
    assert (run["updated"], run["zeroed"]) == (N, 0)
    assert raw.replies["/flaky"].requests == 2
    [attempt] = orjson.loads(run["details"])["attempts"]
    assert "the download was cut short" in attempt["error"]


@pytest.mark.parametrize(("reply", "why"), [
    ({"framing": "length", "cut": 5000}, "the response's Content-Length is"),
    ({"framing": "chunked", "cut": 5000, "piece": 1000}, "the chunked body ended"),
])
async def test_the_source_raises_a_transient_truncated_error(
        settings: Settings, raw: RawHttpServer, reply: dict[str, Any], why: str) -> None:
    """Transient: a retry may get the whole file."""
    download = open_source(FeedUrl.parse(raw.add("/t", CSV, **reply)), settings)
    transfer = download.transfer
    with pytest.raises(TruncatedError, match=why) as caught:
        async for _ in download:
            pass
    assert isinstance(caught.value, TransientSourceError)
    assert caught.value.received == transfer.received == 5000
    assert transfer.vouched


async def test_a_body_delimited_by_close_is_not_vouched_for(
        settings: Settings, raw: RawHttpServer) -> None:
    download = open_source(FeedUrl.parse(raw.add("/c", CSV, cut=5000)), settings)
    transfer = download.transfer
    got = [c async for c in download]
    assert (len(b"".join(got)), transfer.received, transfer.vouched) == (5000, 5000, False)


# -- FTP, SFTP, local files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "feeds"
    top.mkdir()
    (top / "stock.csv").write_bytes(CSV)
    return top


def ftp_server(root: Path, **kwargs: Any) -> Iterator[FTPTestServer]:
    server = FTPTestServer(root, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_an_ftp_transfer_shorter_than_its_size(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer, root: Path) -> None:
    """The server reports the transfer complete (226) after 70% of what SIZE said."""
    feed_id = await seeded(pool, settings, raw)
    cut = CSV.index(b"\n", len(CSV) * 7 // 10) + 1  # at a line's end: the CSV looks whole
    for server in ftp_server(root, end_after=cut):
        await fails_as_truncated(pool, settings, feed_id, server.url("stock.csv"), cut,
                                 f"the server's SIZE is {len(CSV):,} bytes")


async def test_an_ftp_server_without_size_gets_the_format_check(
        pool: asyncpg.Pool, settings: Settings, raw: RawHttpServer, root: Path) -> None:
    feed_id = await seeded(pool, settings, raw)
    cut = mid_line(CSV, 0.7)
    for server in ftp_server(root, end_after=cut, disable=("SIZE",)):
        await fails_as_truncated(pool, settings, feed_id, server.url("stock.csv"), cut,
                                 "the last line has no line break")
    for server in ftp_server(root, disable=("SIZE",)):
        run = await feeds.pull_once(pool, settings, feed_id, server.url("stock.csv"))
        assert run["status"] == "succeeded", run["error"]
        assert (run["unchanged"], run["zeroed"]) == (N, 0)


def halve(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


async def shrunk_while_read(stream: AsyncIterator[bytes], path: Path) -> None:
    """Reads the first chunk, then cuts the file on disk to half its size."""
    first = True
    async for _ in stream:
        if first:
            first = False
            halve(path)


def big_file(root: Path) -> tuple[Path, int]:
    path = root / "big.csv"
    body = CSV * 150  # several 1 MiB chunks
    assert len(body) > 3 * 1024 * 1024
    path.write_bytes(body)
    return path, len(body)


async def test_a_local_file_that_shrinks_while_read(root: Path) -> None:
    path, size = big_file(root)
    url = FeedUrl.parse(path.as_uri())
    download = Download(url, Settings().max_file_bytes)
    with pytest.raises(TruncatedError, match=f"{path} was {size:,} bytes when opened"):
        await shrunk_while_read(file_stream(url, Settings(), download=download), path)
    assert download.transfer.vouched


async def test_an_sftp_file_that_shrinks_while_read(root: Path) -> None:
    path, size = big_file(root)
    server = SFTPTestServer(root)
    await server.start()
    try:
        url = FeedUrl.parse(server.url("big.csv"))
        download = Download(url, Settings().max_file_bytes)
        transfer = download.transfer
        stream = sftp_stream(url, replace(Settings(), fetch_read_timeout_s=5),
                             known_hosts=server.known_hosts(), download=download)
        with pytest.raises(TruncatedError) as caught:
            await shrunk_while_read(stream, path)
        assert f"the file's size on the server is {size:,} bytes" in str(caught.value)
        assert caught.value.received == size // 2
        assert transfer.vouched
    finally:
        await server.stop()
