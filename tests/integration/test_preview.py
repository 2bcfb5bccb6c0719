"""`feed-worker preview` as a user runs it: a real process, feeds served on loopback, the
real database (which the preview must leave as it was)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import asyncpg
import orjson

from tests.integration.test_pull_presets import GOOGLE, GOOGLE_TSV, SHOPIFY
from tests.support import feeds
from tests.support.commands import feed_worker
from tests.support.feedserver import FeedServer
from worker.feedmapping import parse_mapping
from worker.model import Feed, FeedMapping
from worker.pipeline.preview import preview as run_preview
from worker.settings import Settings

GOOD_CSV = (b"external_id,qty,name,retail_price\n"
            b"A1,5,Chair,19.99\n"
            b"A2,0,Dining table in solid oak with two extension leaves,249.00\n"
            b"A3,12,Lamp,9.50\n")


async def preview(db_url: str, feed_id: int, *args: str) -> tuple[int, str, str]:
    return await feed_worker("preview", "--feed", str(feed_id), *args, database_url=db_url)


async def nothing_written(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT count(*) FROM inventory_feed_variants") == 0
    assert await pool.fetchval("SELECT count(*) FROM feed_runs") == 0


async def test_a_csv_with_a_good_mapping(pool: asyncpg.Pool, db_url: str,
                                         feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/good.csv", GOOD_CSV),
                                    mapping={"fields": {"inventoryQuantity": "qty"}})
    code, out, err = await preview(db_url, feed_id)
    assert code == 0, err
    assert "format       csv" in out
    assert "encoding     utf-8" in out
    assert "delimiter    ',' (sniffed)" in out
    assert "header       external_id, qty, name, retail_price" in out
    assert "(the whole file); 3 record(s) shown" in out
    table = out[out.index("at  "):]
    assert re.search(r"^at\s+externalId\s+name\s+inventoryQuantity\s+retailPrice$", table,
                     re.M)
    assert re.search(r"^ 2\s+A1\s+Chair\s+5\s+19\.99$", table, re.M)
    # Cut to the cell width, with "..." at the end.
    assert re.search(r"^ 3\s+A2\s+Dining table in s\.\.\.\s+0\s+249\.00$", table, re.M)
    assert re.search(r"^externalId\s+external_id\s+template\s+3/3 100%$", out, re.M)
    assert re.search(r"^inventoryQuantity\s+qty\s+fields\s+3/3 100%$", out, re.M)
    assert re.search(r"^retailPrice\s+retail_price\s+template\s+3/3 100%$", out, re.M)
    assert out.rstrip().endswith("the mapping works on the sample")
    assert err.strip() == "" or "error" not in err
    await nothing_written(pool)


async def test_only_the_first_rows_are_shown(pool: asyncpg.Pool, db_url: str,
                                             feed_server: FeedServer) -> None:
    body = b"sku,qty\n" + b"".join(b"S%d,%d\n" % (i, i) for i in range(100))
    feed_id = await feeds.make_feed(pool, feed_server.add("/many.csv", body),
                                    mapping={"fields": {"externalId": "sku"}})
    code, out, err = await preview(db_url, feed_id, "--rows", "5")
    assert code == 0, err
    assert "5 record(s) shown" in out
    assert re.search(r"^ 6\s+S4\s+S4\s+4$", out, re.M)  # externalId, vendorSku, quantity
    assert "S5" not in out
    assert re.search(r"^externalId\s+sku\s+fields\s+5/5 100%$", out, re.M)


async def test_google_merchant_xml_with_its_preset(pool: asyncpg.Pool, db_url: str,
                                                   feed_server: FeedServer) -> None:
    url = feed_server.add("/google.xml", GOOGLE, content_type="application/xml")
    feed_id = await feeds.make_feed(pool, url, resource_type="xml",
                                    mapping={"preset": "google-merchant"})
    code, out, err = await preview(db_url, feed_id)
    assert code == 0, err
    assert "format       xml" in out
    assert "encoding     utf-8" in out
    assert "record path  /rss/channel/item" in out
    assert "3 record(s) shown" in out
    # On sale: the sale price is the retail price and g:price the compare-at price; the
    # prices' currency code is kept; in_stock is available without a tracked quantity.
    on_sale = next(line for line in out.splitlines() if line.startswith(" 1  "))
    assert re.search(r'TV_123456\s+71919219405200\s+LG 22LB4510 - 22"\.\.\.\s+ignore\s+'
                     r"139\.00\s+159\.00", on_sale), on_sale
    assert re.search(r"\s+USD\s+Attractively styl\.\.\.", on_sale), on_sale
    preorder = next(line for line in out.splitlines() if line.startswith(" 3  "))
    assert re.search(r"TV_200\s+OLED 55\s+0\s+continue\s+1099\.99", preorder), preorder
    assert re.search(r"^externalId\s+g:id\s+preset\s+3/3 100%$", out, re.M)
    assert re.search(r"^name\s+g:title \| title\s+preset\s+3/3 100%$", out, re.M)
    assert re.search(r"^compareAtPrice\s+.*preset\s+1/3 33%$", out, re.M)
    assert re.search(r"^in no sampled record, left as stored: .*costPrice \(template\)", out,
                     re.M)
    assert out.rstrip().endswith("the mapping works on the sample")
    await nothing_written(pool)


async def test_a_shopify_export_with_its_preset(pool: asyncpg.Pool, db_url: str,
                                                feed_server: FeedServer) -> None:
    """Image-only rows are skipped, not rejected, and said so; every variant shows its
    product's title."""
    feed_id = await feeds.make_feed(pool, feed_server.add("/products_export.csv", SHOPIFY),
                                    mapping={"preset": "shopify"})
    code, out, err = await preview(db_url, feed_id)
    assert code == 0, err
    assert "5 record(s) shown" in out
    assert re.search(r"^skipped\s+3 image-only rows$", out, re.M)
    assert "rejected" not in out
    for sku in ("OAK-S", "OAK-M", "OAK-L"):
        assert re.search(rf"^ \d\s+{sku}\s+{sku}\s+(\d+\s+)?Oak Table\s", out, re.M), out
    assert re.search(r"^name\s+Title\s+preset\s+5/5 100%$", out, re.M)
    await nothing_written(pool)


async def test_a_google_merchant_text_feed_with_its_preset(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/products.txt", GOOGLE_TSV),
                                    mapping={"preset": "google-merchant"})
    code, out, err = await preview(db_url, feed_id)
    assert code == 0, err
    assert "delimiter    '\\t' (sniffed)" in out
    assert re.search(r"^externalId\s+id\s+preset\s+3/3 100%$", out, re.M)
    assert re.search(r"^compareAtPrice\s+price\s+preset\s+1/3 33%$", out, re.M)
    assert "skipped" not in out
    await nothing_written(pool)


async def test_a_json_feed_with_a_typo_in_a_path_exits_1(pool: asyncpg.Pool, db_url: str,
                                                         feed_server: FeedServer) -> None:
    body = orjson.dumps({"data": {"items": [
        {"id": "J1", "stock": {"available": 4}}, {"id": "J2", "stock": {"available": 0}}]}})
    url = feed_server.add("/api.json", body, content_type="application/json")
    feed_id = await feeds.make_feed(pool, url, resource_type="json", mapping={
        "record": "data.items",
        "fields": {"externalId": "id", "inventoryQuantity": "stock.availabel"}})
    code, out, err = await preview(db_url, feed_id)
    assert code == 1, err
    assert "format       json" in out
    assert "record path  data.items" in out
    assert re.search(r"^externalId\s+id\s+fields\s+2/2 100%$", out, re.M)
    assert re.search(r"^inventoryQuantity\s+stock\.availabel\s+fields\s+0/2 0%$", out, re.M)
    assert "the mapping cannot work: 1 problem(s)" in out
    problems = err.strip().splitlines()
    assert problems == ["feed-worker preview: error: inventoryQuantity (path "
                        "'stock.availabel') matched no record of 2: keys are case-sensitive "
                        "and the path is dotted from the record; check it against a record "
                        "of the file"]


async def test_a_json_feed_without_records_at_its_path_exits_1(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    url = feed_server.add("/empty.json", b'{"data": {"items": []}}',
                          content_type="application/json")
    feed_id = await feeds.make_feed(pool, url, resource_type="json",
                                    mapping={"record": "data.items"})
    code, _, err = await preview(db_url, feed_id)
    assert code == 1
    assert "error: no records at data.items (mapping.record)" in err


async def test_rejected_rows_show_their_reasons_inline(pool: asyncpg.Pool, db_url: str,
                                                       feed_server: FeedServer) -> None:
    body = (b"external_id;qty;cost_price\n"
            b"R1;3;1,50\n"
            b"R2;1 in stock;2,00\n"
            b";4;1,00\n"
            b"R4;7;-3\n"
            b"R5;2\n")
    feed_id = await feeds.make_feed(pool, feed_server.add("/rejects.csv", body),
                                    decimal_notation="comma")
    code, out, err = await preview(db_url, feed_id)
    assert code == 0, err
    assert "delimiter    ';' (sniffed)" in out
    assert re.search(r"^ 2\s+R1\s+3\s+1\.50$", out, re.M)
    assert re.search(r"^ 3  rejected: inventoryQuantity: '1 in stock' is not a whole number"
                     r"  \(R2;1 in stock;2,00\)$", out, re.M)
    assert re.search(r"^ 4  rejected: externalId is blank  \(;4;1,00\)$", out, re.M)
    assert re.search(r"^ 5  rejected: costPrice: .*negative", out, re.M)
    assert re.search(r"^ 6  rejected: expected 3 columns, found 2  \(R5;2\)$", out, re.M)
    # Coverage counts the well-formed records (the short one is not a record to map).
    assert re.search(r"^externalId\s+external_id\s+template\s+3/4 75%$", out, re.M)
    assert out.rstrip().endswith("the mapping works on the sample")


async def test_a_mapped_column_missing_from_the_header_exits_1_showing_the_header(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/typo.csv", GOOD_CSV),
                                    mapping={"fields": {"inventoryQuantity": "quantty"}})
    code, out, err = await preview(db_url, feed_id)
    assert code == 1
    assert "header       external_id, qty, name, retail_price" in out
    assert err.strip() == ("feed-worker preview: error: mapped column 'quantty' "
                           "(inventoryQuantity) is not in the header: 'external_id', 'qty', "
                           "'name', 'retail_price'")


async def test_every_sampled_record_rejected_exits_1(pool: asyncpg.Pool, db_url: str,
                                                     feed_server: FeedServer) -> None:
    body = b"sku,qty\nA,many\nB,lots\n"
    feed_id = await feeds.make_feed(pool, feed_server.add("/bad.csv", body),
                                    mapping={"fields": {"externalId": "sku"}})
    code, _, err = await preview(db_url, feed_id)
    assert code == 1
    assert "error: all 2 sampled records were rejected (first: 2: inventoryQuantity: " \
        "'many' is not a whole number)" in err


async def test_a_feed_that_cannot_be_read_exits_2(pool: asyncpg.Pool, db_url: str,
                                                  feed_server: FeedServer) -> None:
    code, out, err = await preview(db_url, 424242)
    assert (code, out) == (2, "")
    assert err.strip() == "feed-worker preview: error: feed 424242 does not exist"
    feed_id = await feeds.make_feed(pool, feed_server.url("/missing.csv", "u", "hunter2"))
    code, out, err = await preview(db_url, feed_id)
    assert (code, out) == (2, "")
    assert "HTTP 404" in err
    assert "hunter2" not in err
    code, _, err = await preview(db_url, feed_id, "--url", "gopher://127.0.0.1/feed.csv")
    assert code == 2
    assert "scheme 'gopher' is not supported" in err
    webhook = await feeds.make_feed(pool, None, resource_type="webhook")
    code, _, err = await preview(db_url, webhook)
    assert code == 2
    assert "is pushed, not read from a file" in err
    await nothing_written(pool)


async def test_a_local_file_by_url(pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "local.csv"
    path.write_bytes(GOOD_CSV)
    feed_id = await feeds.make_feed(pool, None)
    code, out, err = await preview(db_url, feed_id, "--url", path.as_uri())
    assert code == 0, err
    assert f"feed {feed_id} from {path.as_uri()}" in out
    assert "3 record(s) shown" in out


async def test_only_the_head_of_a_large_file_is_downloaded(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    row = b"SKU-%08d,%d,A product name long enough to make the file large,12.50\n"
    body = b"external_id,qty,name,retail_price\n" + b"".join(
        row % (i, i % 50) for i in range(1_000_000))
    assert len(body) > 60 * 1024 * 1024
    # Paced, so that the server cannot race ahead of the client into the sockets' buffers:
    # what it sent is what the client asked for before it closed the connection.
    feed_id = await feeds.make_feed(pool, feed_server.add("/big.csv", body, pace_s=0.002))
    code, out, err = await preview(db_url, feed_id, "--rows", "20")
    assert code == 0, err
    assert "(the head of the file); 20 record(s) shown" in out
    read = re.search(r"^read\s+([\d,]+) bytes", out, re.M)
    assert read is not None
    assert int(read[1].replace(",", "")) < 2 * 1024 * 1024
    route = feed_server.routes["/big.csv"]
    assert route.requests == 1
    assert route.sent < len(body) // 8, route.sent


# The function the HTTP API calls: no database, no printing.

def _feed(resource_type: str, mapping: dict[str, object], delimiter: str | None = None,
          has_header: bool = True) -> Feed:
    return Feed(id=7, name="f", enabled=True, resource_type=resource_type,
                resource_location=None, delimiter=delimiter, csv_has_header=has_header,
                decimal_notation="decimal", encoding=None,
                mapping=parse_mapping(mapping, resource_type, has_header),
                provider_archived=False)


async def test_the_function_gives_the_values_as_a_pull_would_write_them(tmp_path: Path) -> None:
    text = ('external_id,name,qty\n'
            'K1,"two\nlines, a tab\tand a \\ backslash",4\n'
            'K2,plain,\n')
    path = tmp_path / "feed.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    result = await run_preview(_feed("ftp_csv", {}), path.as_uri(), Settings(), 10,
                               local_files=True)
    assert result.ok, result.problems
    assert (result.format, result.compression, result.complete) == ("csv", "gzip", True)
    assert [r.position for r in result.rows] == [2, 4]
    assert result.rows[0].values == {"externalId": "K1", "inventoryQuantity": "4",
                                     "name": "two\nlines, a tab\tand a \\ backslash"}
    assert result.rows[1].values == {"externalId": "K2", "inventoryQuantity": "", "name": "plain"}
    assert result.columns == ["externalId", "name", "inventoryQuantity"]
    quantity = next(c for c in result.coverage if c.attribute == "inventoryQuantity")
    assert (quantity.source, quantity.origin, quantity.matched, quantity.sampled) == (
        "qty", "template", 1, 2)


async def test_the_function_stops_at_the_head_when_the_record_path_finds_nothing(
        tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(b"<feed>" + b"<product><id>P</id></product>\n" * 40_000 + b"</feed>")
    feed = _feed("xml", {"record": "/feed/item", "fields": {"externalId": "id"}})
    result = await run_preview(feed, path.as_uri(), Settings(), 20, local_files=True,
                               head_bytes=64 * 1024)
    assert result.problems == ["no records at /feed/item (mapping.record): no element has "
                               "that path from the root (in the first 65,536 bytes of the "
                               "document)"]
    assert not result.complete
    assert result.bytes_read < path.stat().st_size
    feed = _feed("xml", {"record": "/feed/product", "fields": {"externalId": "id"}})
    result = await run_preview(feed, path.as_uri(), Settings(), 2, local_files=True)
    assert result.ok
    assert [(r.position, r.values["externalId"]) for r in result.rows] == [(1, "P"), (2, "P")]
    assert not result.complete


async def test_the_function_names_a_bad_stored_mapping_without_downloading(
        feed_server: FeedServer) -> None:
    url = feed_server.add("/f.json", b"[]", content_type="application/json")
    feed = _feed("json", {})
    feed.mapping = FeedMapping(error="mapping.format 'csv': use \"json\" or \"ndjson\"")
    result = await run_preview(feed, url, Settings(), 20)
    assert result.problems == ["mapping.format 'csv': use \"json\" or \"ndjson\""]
    assert feed_server.routes["/f.json"].requests == 0


async def test_the_function_on_ndjson_and_on_a_csv_without_a_header(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_bytes(b'{"externalId": "N1", "inventoryQuantity": 3}\n'
                     b'{"externalId": "N2", "inventoryQuantity": "x"}\n')
    result = await run_preview(_feed("json", {}), path.as_uri(), Settings(), 20,
                               local_files=True)
    assert (result.format, result.record_path, result.ok) == ("ndjson", "", True)
    assert result.rows[0].values == {"externalId": "N1", "inventoryQuantity": "3"}
    assert result.rows[1].reject == "inventoryQuantity: 'x' is not a whole number"
    path = tmp_path / "plain.csv"
    path.write_bytes(b"P1|shelf|7\nP2|shelf|8\n")
    feed = _feed("ftp_csv", {"fields": {"externalId": 0, "inventoryQuantity": 2}},
                 delimiter="pipe", has_header=False)
    result = await run_preview(feed, path.as_uri(), Settings(), 20, local_files=True)
    assert result.ok, result.problems
    assert (result.header, result.delimiter, result.delimiter_sniffed) == (None, "|", False)
    assert [(c.attribute, c.source, c.matched) for c in result.coverage] == [
        ("externalId", "0", 2), ("inventoryQuantity", "2", 2)]
    assert [r.values for r in result.rows] == [
        {"externalId": "P1", "inventoryQuantity": "7"},
        {"externalId": "P2", "inventoryQuantity": "8"}]


async def test_value_rules_show_in_the_rows_and_the_coverage(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    body = (b"Item ID,EAN,Price,Stock Berlin,Stock Paris\n"
            b"V1,4006381333931,10.00,3,4\n"
            b"V2,4006381333932,20.00,,1\n"
            b"V3,,5.00,,\n")
    feed_id = await feeds.make_feed(pool, feed_server.add("/rules.csv", body), mapping={
        "fields": {"externalId": "Item ID", "barcode": "EAN", "retailPrice": "Price"},
        "rules": {"price": {"markupPercent": 20, "rounding": ".99"},
                  "quantity": {"sum": {"berlin": "Stock Berlin", "paris": "Stock Paris"},
                               "locations": True},
                  "barcode": {"gtin": "reject"}}})
    code, out, err = await preview(db_url, feed_id)
    assert code == 0, err
    assert re.search(r"^at\s+externalId\s+barcode\s+inventoryQuantity\s+retailPrice\s+"
                     r"locations$", out, re.M), out
    # The sum of the locations, the price marked up and rounded; the locations' JSON cut.
    assert re.search(r'^ 2\s+V1\s+4006381333931\s+7\s+12\.99\s+\{"(paris|berlin)":\d,"',
                     out, re.M), out
    assert re.search(r"^ 3  rejected: barcode: '4006381333932' has a wrong check digit", out,
                     re.M), out
    assert re.search(r"^ 4\s+V3\s+6\.99$", out, re.M), out
    assert re.search(r"^inventoryQuantity \(berlin\)\s+Stock Berlin\s+rules\s+1/3 33%$", out,
                     re.M), out
    assert re.search(r"^inventoryQuantity \(paris\)\s+Stock Paris\s+rules\s+2/3 67%$", out,
                     re.M), out
    assert re.search(r"^value rules: .*price\.markup=3 .*quantity\.sum=2", out, re.M), out


async def test_blank_lines_are_no_records_of_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "blanks.csv"
    path.write_bytes(b"external_id,qty\nA,1\n\nB,2\n\n\nC,3\nD,4\n")
    result = await run_preview(_feed("ftp_csv", {}), path.as_uri(), Settings(), 3,
                               local_files=True)
    assert [(r.position, r.values["externalId"]) for r in result.rows] == [
        (2, "A"), (4, "B"), (7, "C")]
    assert not result.complete
