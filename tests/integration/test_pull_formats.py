"""Pulls of the files suppliers really serve: other encodings and delimiters, gzip, zip."""

from __future__ import annotations

import gzip
import io
import zipfile
from decimal import Decimal

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from tests.unit.test_decompress import zipped
from worker.settings import Settings

TEXT = "external_id;name;qty\nA;Café Crème;3\nB;Ünïcödé ✓;4\n"


@pytest.mark.parametrize(("encoding", "prefix"), [
    ("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
    ("utf-16-be", b"\xfe\xff")])
async def test_encodings_by_byte_order_mark(pool: asyncpg.Pool, settings: Settings,
                                            feed_server: FeedServer, encoding: str,
                                            prefix: bytes) -> None:
    url = feed_server.add("/e.csv", prefix + TEXT.encode(encoding))
    feed_id = await feeds.make_feed(pool, url)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    got = await feeds.items(pool, feed_id)
    assert (got["A"]["name"], got["B"]["name"]) == ("Café Crème", "Ünïcödé ✓")
    details = orjson.loads(run["details"])
    assert details["encoding"] == encoding
    assert (details["delimiter"], details["delimiter_sniffed"]) == (";", True)


async def test_cp1252_fallback_is_recorded(pool: asyncpg.Pool, settings: Settings,
                                           feed_server: FeedServer) -> None:
    data = "external_id,name\nA,Caf\u00e9 \u20ac5\n".encode("cp1252")
    feed_id = await feeds.make_feed(pool, feed_server.add("/w.csv", data))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (await feeds.items(pool, feed_id))["A"]["name"] == "Café €5"
    details = orjson.loads(run["details"])
    assert details["encoding"] == "cp1252"
    assert details["warnings"] == ["not valid UTF-8 at byte 22: read as cp1252"]


async def test_configured_encoding(pool: asyncpg.Pool, settings: Settings,
                                   feed_server: FeedServer) -> None:
    data = "external_id\tname\nA\tGrößé\n".encode("iso-8859-15")
    feed_id = await feeds.make_feed(pool, feed_server.add("/l.csv", data),
                                    encoding="iso-8859-15", delimiter="tab")
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (await feeds.items(pool, feed_id))["A"]["name"] == "Größé"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
async def test_sniffed_delimiters(pool: asyncpg.Pool, settings: Settings,
                                  feed_server: FeedServer, delimiter: str) -> None:
    body = TEXT.replace(";", delimiter).replace("Café Crème", '"Café, Crème; | x"')
    feed_id = await feeds.make_feed(pool, feed_server.add("/s.csv", body.encode()))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["inserted"] == 2, run["error"]
    assert (await feeds.items(pool, feed_id))["A"]["name"] == "Café, Crème; | x"
    assert orjson.loads(run["details"])["delimiter"] == delimiter


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", b"not the feed")
        z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("packing", ["gzip", "zip"])
async def test_compressed_feeds_by_magic_bytes(pool: asyncpg.Pool, settings: Settings,
                                               feed_server: FeedServer, packing: str) -> None:
    data = ("external_id,qty\n" + "".join(f"Z{i},{i}\n" for i in range(5000))).encode()
    body = gzip.compress(data) if packing == "gzip" else _zip("stock.csv", data)
    # The name says nothing: the bytes do.
    feed_id = await feeds.make_feed(pool, feed_server.add("/download", body),
                                    mapping={"zipEntry": "stock.csv"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["inserted"] == 5000, run["error"]
    assert orjson.loads(run["details"])["compression"] == packing
    assert run["bytes"] == len(body)


async def test_a_zip64_zip_lands_and_a_corrupt_one_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """Entries in the zip64 format (written as a stream: a skipped entry's data descriptor
    has 8-byte sizes); then the same zip with one byte of the entry's data changed."""
    data = ("external_id,qty\n" + "".join(f"Z{i},{i}\n" for i in range(5000))).encode()
    body = zipped({"readme.txt": b"not the feed\n" * 100, "stock.csv": data},
                  stream=True, zip64=True)
    url = feed_server.add("/z64", body)
    feed_id = await feeds.make_feed(pool, url, mapping={"zipEntry": "stock.csv"})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["status"], run["inserted"]) == ("succeeded", 5000), run["error"]
    before = await feeds.table_state(pool)
    broken = bytearray(zipped({"stock.csv": data.replace(b"Z1,1", b"Z1,7")}, zipfile.ZIP_STORED,
                              zip64=True))
    at = broken.index(b"Z1,7")
    broken[at + 3] = ord("1")  # the bytes no longer match the entry's CRC-32
    feed_server.add("/z64", bytes(broken))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "zip entry 'stock.csv' is corrupt: its bytes' CRC-32 is" in run["error"]
    assert await feeds.table_state(pool) == before


async def test_a_gzip_bomb_fails_its_run(pool: asyncpg.Pool, settings: Settings,
                                         feed_server: FeedServer) -> None:
    from dataclasses import replace

    bomb = gzip.compress(b"external_id,qty\n" + b"\0" * 30_000_000)
    feed_id = await feeds.make_feed(pool, feed_server.add("/bomb.csv.gz", bomb))
    run = await feeds.pull_once(pool, replace(settings, max_decompressed_bytes=5_000_000),
                                feed_id)
    assert run["status"] == "failed"
    assert "inflates past 5000000 bytes" in run["error"]
    assert await feeds.items(pool, feed_id) == {}


async def test_cache_imports_skips_an_unchanged_file(pool: asyncpg.Pool, settings: Settings,
                                                     feed_server: FeedServer) -> None:
    url = feed_server.add("/c.csv", b"external_id,qty\nA,1\n", etag='"v1"')
    feed_id = await feeds.make_feed(pool, url, cache_imports=True)
    first = await feeds.pull_once(pool, settings, feed_id)
    assert first["status"] == "succeeded", first["error"]
    assert orjson.loads(first["details"])["validators"]["etag"] == '"v1"'
    second = await feeds.pull_once(pool, settings, feed_id)
    assert second["status"] == "skipped"
    assert "unchanged (HTTP 304)" in second["error"]
    assert feed_server.routes["/c.csv"].requests == 2
    feed_server.add("/c.csv", b"external_id,qty\nA,5\n", etag='"v2"')
    third = await feeds.pull_once(pool, settings, feed_id)
    assert (third["status"], third["updated"]) == ("succeeded", 1)
    assert (await feeds.items(pool, feed_id))["A"]["inventory_quantity"] == 5


async def test_link_header_pages_with_a_bearer_token(pool: asyncpg.Pool, settings: Settings,
                                                     feed_server: FeedServer) -> None:
    feed_server.add("/p1.csv", b"external_id,qty\nA,1\n",
                    headers={"Link": '</p2.csv>; rel="next"'}, bearer="t0ken")
    feed_server.add("/p2.csv", b"external_id,qty\nB,2\nA,3\n", bearer="t0ken")
    feed_id = await feeds.make_feed(pool, feed_server.url("/p1.csv"),
                                    authentication_token="t0ken")
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["inserted"], run["duplicates"]) == (3, 2, 1)
    assert orjson.loads(run["details"])["pages"] == 2
    assert {k: v["inventory_quantity"] for k, v in (await feeds.items(pool, feed_id)).items()} \
        == {"A": 3, "B": 2}
    assert "t0ken" not in str(run)


async def test_records_cap(pool: asyncpg.Pool, settings: Settings,
                           feed_server: FeedServer) -> None:
    from dataclasses import replace

    body = b"external_id,qty\n" + b"".join(b"R%d,1\n" % i for i in range(100))
    feed_id = await feeds.make_feed(pool, feed_server.add("/many.csv", body))
    run = await feeds.pull_once(pool, replace(settings, max_records=50), feed_id)
    assert run["status"] == "failed"
    assert "more than 50 records" in run["error"]


async def test_prices_with_a_currency_code(pool: asyncpg.Pool, settings: Settings,
                                           feed_server: FeedServer) -> None:
    body = b"external_id,retail_price,qty\nA,105.29 USD,1\nB,7.50,2\nC,9.99 euros,3\n"
    feed_id = await feeds.make_feed(pool, feed_server.add("/cur.csv", body))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["inserted"], run["rejected"]) == (2, 1), run["error"]
    got = await feeds.items(pool, feed_id)
    assert (got["A"]["retail_price"], got["A"]["currency"]) == (Decimal("105.29"), "USD")
    assert got["B"]["currency"] is None


async def test_content_encoding_gzip_is_inflated_under_the_cap(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    from dataclasses import replace

    data = ("external_id,qty\n" + "".join(f"G{i},{i}\n" for i in range(20000))).encode()
    body = gzip.compress(data)
    feed_id = await feeds.make_feed(pool, feed_server.add(
        "/enc.csv", body, headers={"Content-Encoding": "gzip"}))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["inserted"] == 20000, run["error"]
    assert run["bytes"] == len(body)  # as downloaded
    assert orjson.loads(run["details"])["compression"] == "gzip"
    capped = await feeds.pull_once(pool, replace(settings, max_decompressed_bytes=10_000),
                                   feed_id)
    assert capped["status"] == "failed"
    assert "inflates past 10000 bytes" in capped["error"]
