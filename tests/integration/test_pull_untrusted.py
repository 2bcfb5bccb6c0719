"""Untrusted bytes end to end: a field over the size cap (FEED_WORKER_MAX_FIELD_CHARS) is a
reject of its record in every format, NUL bytes are rejects counted in the run's details,
a header row that cannot be read fails the run rather than shifting the columns, and a
compressed file that inflates too many times fails its run early."""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from worker.settings import Settings

ROWS = [("A", "ok", 1), ("B", None, 2), ("C", "fine", 3)]  # B's name: over the cap


def body(fmt: str, big: str) -> tuple[bytes, dict[str, Any]]:
    """The three items in the format, with B's name `big`; and the feed's columns."""
    items = [(ext, big if name is None else name, qty) for ext, name, qty in ROWS]
    if fmt == "csv":
        text = "external_id,name,qty\n" + "".join(f"{e},{n},{q}\n" for e, n, q in items)
        return text.encode(), {}
    if fmt == "xml":
        xml = "".join(f"<item><id>{e}</id><name>{n}</name><qty>{q}</qty></item>"
                      for e, n, q in items)
        return f"<feed>{xml}</feed>".encode(), {"resource_type": "xml", "mapping": {
            "record": "/feed/item",
            "fields": {"externalId": "id", "name": "name", "inventoryQuantity": "qty"}}}
    records = [{"id": e, "info": {"name": n}, "qty": q} for e, n, q in items]
    return orjson.dumps(records), {"resource_type": "json", "mapping": {
        "fields": {"externalId": "id", "name": "info.name", "inventoryQuantity": "qty"}}}


@pytest.mark.parametrize("fmt", ["csv", "xml", "json"])
async def test_a_field_over_the_cap_rejects_its_record(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, fmt: str) -> None:
    cap = settings.max_field_chars
    data, columns = body(fmt, "x" * (cap + 1))
    feed_id = await feeds.make_feed(pool, feed_server.add(f"/big.{fmt}", data), **columns)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["inserted"], run["rejected"]) == (3, 2, 1)
    got = await feeds.items(pool, feed_id)
    assert {k: (v["name"], v["inventory_quantity"]) for k, v in got.items()} == {
        "A": ("ok", 1), "C": ("fine", 3)}
    [reject] = await feeds.rejects(pool, run["id"])
    assert reject["position"] == (3 if fmt == "csv" else 2)  # line, or record number
    field = "field 2" if fmt == "csv" else "name"
    assert reject["reason"] == (f"{field} is {cap + 1} characters long, over the "
                                f"{cap}-character cap (FEED_WORKER_MAX_FIELD_CHARS)")
    assert len(reject["raw"]) <= settings.max_reject_raw_chars + 3


async def test_a_field_of_exactly_the_cap_lands(pool: asyncpg.Pool, settings: Settings,
                                                feed_server: FeedServer) -> None:
    data, _ = body("csv", "y" * settings.max_field_chars)
    feed_id = await feeds.make_feed(pool, feed_server.add("/cap.csv", data))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["status"], run["inserted"], run["rejected"]) == ("succeeded", 3, 0)
    assert (await feeds.items(pool, feed_id))["B"]["name"] == "y" * settings.max_field_chars


async def test_a_long_quoted_field_over_lines_is_one_reject(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """Read to its closing quote: the records after it are still read as they are."""
    piece = "z" * (settings.max_field_chars // 3)
    text = (f'external_id,name,qty\nA,ok,1\nB,"{piece}\n{piece}\n{piece}\n{piece}",2\n'
            'C,"two\nlines",3\n')
    feed_id = await feeds.make_feed(pool, feed_server.add("/multi.csv", text.encode()))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["status"], run["inserted"], run["rejected"]) == ("succeeded", 2, 1)
    got = await feeds.items(pool, feed_id)
    assert sorted(got) == ["A", "C"]
    assert got["C"]["name"] == "two\nlines"
    [reject] = await feeds.rejects(pool, run["id"])
    assert reject["position"] == 3
    assert "FEED_WORKER_MAX_FIELD_CHARS" in reject["reason"]


async def test_nul_lines_are_rejected_and_counted(pool: asyncpg.Pool, settings: Settings,
                                                  feed_server: FeedServer) -> None:
    data = b"external_id,qty,retail_price\nA,1,9.99\nB\x00,2,1\nC,3,\x002\n\x00\nD,4,5.50\n"
    feed_id = await feeds.make_feed(pool, feed_server.add("/nul.csv", data))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (2, 3)
    assert orjson.loads(run["details"])["nul_lines"] == 3
    got = await feeds.items(pool, feed_id)
    assert {k: v["retail_price"] for k, v in got.items()} == {
        "A": Decimal("9.99"), "D": Decimal("5.50")}
    rejects = await feeds.rejects(pool, run["id"])
    assert [(r["position"], r["raw"]) for r in rejects] == [
        (3, "B\\0,2,1"), (4, "C,3,\\02"), (5, "\\0")]
    assert all("NUL" in r["reason"] for r in rejects)


async def test_a_clean_file_has_no_nul_count(pool: asyncpg.Pool, settings: Settings,
                                             feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/ok.csv", b"external_id\nA\n"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert "nul_lines" not in orjson.loads(run["details"])


async def test_json_values_with_nul_are_rejected_and_counted(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    # D has a name: a mapped path that no readable record has would fail the run.
    data = (b'[{"id": "A"}, {"id": "B\\u0000"}, {"id": "C", "name": "\\u0000"}, '
            b'{"id": "D", "name": "Lamp"}]')
    feed_id = await feeds.make_feed(pool, feed_server.add("/nul.json", data),
                                    resource_type="json",
                                    mapping={"fields": {"externalId": "id", "name": "name"}})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["inserted"], run["rejected"]) == (2, 2)
    assert orjson.loads(run["details"])["nul_records"] == 2
    assert sorted(await feeds.items(pool, feed_id)) == ["A", "D"]


@pytest.mark.parametrize(("header", "why"), [
    (b"external_id,na\x00me,qty", "NUL"),
    (b'external_id,"name,qty', "FEED_WORKER_MAX_FIELD_CHARS"),  # an unclosed quote
])
async def test_an_unreadable_header_fails_the_run(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, header: bytes,
        why: str) -> None:
    data = header + b"\n" + b"".join(b"I%d,item,%d\n" % (i, i) for i in range(20000))
    feed_id = await feeds.make_feed(pool, feed_server.add("/header.csv", data))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "the header row (line 1) cannot be read" in run["error"]
    assert why in run["error"]
    assert await feeds.items(pool, feed_id) == {}


MiB = 1 << 20


def bomb(kind: str, size: int) -> bytes:
    """A feed of two rows and then `size` bytes of blank lines (which compress about 1000
    times), as gzip or as a zip entry, compressed a MiB at a time."""
    head, filler = b"external_id,qty\nA,1\nB,2\n", b"\n" * MiB
    if kind == "gzip":
        z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        parts = [z.compress(head), *(z.compress(filler) for _ in range(size // MiB))]
        return b"".join([*parts, z.flush()])
    info = zipfile.ZipInfo("feed.csv")
    info.compress_type = zipfile.ZIP_DEFLATED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, zf.open(info, "w") as f:
        f.write(head)
        for _ in range(size // MiB):
            f.write(filler)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["gzip", "zip"])
async def test_a_bomb_under_the_size_cap_fails_on_its_inflation_ratio(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, kind: str) -> None:
    """512 MiB inflated from ~0.5 MB, under the 8 GiB default cap: the run fails once the
    output passes 16 MiB, with the ratio and the sizes it saw; nothing of it lands."""
    assert settings.max_inflation_ratio == 100
    assert settings.max_decompressed_bytes > 512 * MiB
    feed_id = await feeds.make_feed(pool, feed_server.add("/ok.csv", b"external_id,qty\nA,5\n"))
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "succeeded"
    before = await feeds.table_state(pool)
    data = bomb(kind, 512 * MiB)
    url = feed_server.add(f"/bomb.{kind}", data, content_type="application/octet-stream")
    run = await feeds.pull_once(pool, settings, feed_id, url)
    assert run["status"] == "failed"
    found = re.fullmatch(r"the feed inflates more than 100 times: ([\d,]+) bytes became "
                         r"([\d,]+) bytes so far \(FEED_WORKER_MAX_INFLATION_RATIO\)",
                         run["error"])
    assert found is not None, run["error"]
    read, became = (int(g.replace(",", "")) for g in found.groups())
    assert 16 * MiB < became < 64 * MiB  # stopped early, not after 512 MiB
    assert became > 100 * read
    assert read <= run["bytes"] <= len(data)
    assert await feeds.table_state(pool) == before
    assert (await feeds.items(pool, feed_id))["A"]["inventory_quantity"] == 5
