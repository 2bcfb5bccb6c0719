"""Spreadsheet feeds (XLSX, XLS, ODS) pulled over the real HTTP feed server: the awkward
cells land as their values; a missing sheet or a corrupt file fails the run and changes
nothing; an error cell in a mapped column rejects its row; a CSV feed's file that is a
spreadsheet is read as one; a Google Sheets link of a spreadsheet feed is read as its XLSX
export."""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds, spreadsheets
from tests.support.apiprocess import ApiProcess, Client, feed, provider
from tests.support.commands import feed_worker
from tests.support.feedserver import FeedServer
from worker.feedmapping import parse_mapping
from worker.model import Feed
from worker.pipeline.preview import preview as run_preview
from worker.settings import Settings

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def pull(pool: asyncpg.Pool, settings: Settings, url: str,
               **columns: Any) -> tuple[int, dict[str, Any]]:
    feed_id = await feeds.make_feed(pool, url, **columns)
    return feed_id, await feeds.pull_once(pool, settings, feed_id)


def landed(items: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {k: (v["barcode"], str(v["retail_price"]), v["inventory_quantity"], v["name"],
                orjson.loads(v["extra"] or "{}").get("description"))
            for k, v in items.items()}


@pytest.mark.parametrize("kind", ["xlsx", "xls", "ods"])
async def test_the_awkward_cells_land_as_their_values(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, kind: str) -> None:
    url = feed_server.add(f"/stock.{kind}", spreadsheets.WORKBOOKS[kind](),
                          content_type="application/octet-stream")
    feed_id, run = await pull(pool, settings, url, resource_type="spreadsheet",
                              mapping=spreadsheets.MAPPING)
    assert run["status"] == "succeeded", run["error"]
    assert landed(await feeds.items(pool, feed_id)) == {
        "A-1": ("4006381333931", "19.9", 7, "Hose", "2026-12-05"),
        "A-2": ("12345678", "0.3", 1, "7", "2026-12-05T10:15:00"),
        "B-3": ("40063813339310", "1234.5", 7, "Tap", "2026-01-31"),
    }
    details = orjson.loads(run["details"])
    assert (details["format"], details["sheet"], run["rows_read"], run["rejected"]) == (
        kind, "Stock", 4, 1)
    [reject] = await feeds.rejects(pool, run["id"])
    assert reject["position"] == 7  # the sheet's row
    assert "lots" in reject["reason"]


def error_cells_xlsx() -> bytes:
    """A sheet whose formulas failed where Excel saved them: #DIV/0! in a price (a column
    the mapping reads), #N/A in a note (a column nothing reads)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["external_id", "retail_price", "inventory_quantity", "note"])
    ws.append(["E-1", 9.5, 3, "ok"])
    ws.append(["E-2", "#DIV/0!", 4, "ok"])
    ws["B3"].data_type = "e"
    ws.append(["E-3", 12, 5, "#N/A"])
    ws["D4"].data_type = "e"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def test_an_error_cell_in_a_mapped_column_rejects_its_row(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    url = feed_server.add("/errors.xlsx", error_cells_xlsx())
    feed_id, run = await pull(pool, settings, url, resource_type="spreadsheet", mapping={})
    assert run["status"] == "succeeded", run["error"]
    items = await feeds.items(pool, feed_id)
    assert {k: (str(v["retail_price"]), v["inventory_quantity"]) for k, v in items.items()} == {
        "E-1": ("9.5", 3), "E-3": ("12", 5)}  # E-3's error is in a column nothing reads
    assert (run["rows_read"], run["rejected"]) == (3, 1)
    [reject] = await feeds.rejects(pool, run["id"])
    assert (reject["position"], reject["reason"]) == (3, "column B holds the error #DIV/0!")
    feed = Feed(id=feed_id, name="f", enabled=True, resource_type="spreadsheet",
                resource_location=url, delimiter=None, csv_has_header=True,
                decimal_notation="decimal", encoding=None,
                mapping=parse_mapping({}, "spreadsheet"), provider_archived=False)
    shown = await run_preview(feed, url, settings, 5)
    assert [(r.position, r.reject) for r in shown.rows] == [
        (2, None), (3, "column B holds the error #DIV/0!"), (4, None)]


async def test_a_csv_feed_whose_file_is_a_spreadsheet(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """Known by its first bytes, also inside gzip; its sheet and header row as mapped."""
    data = spreadsheets.xlsx()
    for path, body in (("/stock.csv", data), ("/stock.csv.gz", gzip.compress(data))):
        url = feed_server.add(path, body)
        feed_id, run = await pull(pool, settings, url,
                                  mapping={"sheet": "Stock", "headerRow": 2})
        assert run["status"] == "succeeded", run["error"]
        items = await feeds.items(pool, feed_id)
        assert items["A-1"]["barcode"] == "4006381333931"
        assert str(items["A-1"]["retail_price"]) == "19.9"


@pytest.mark.parametrize(("kind", "mapping", "reason"), [
    ("xlsx", {"sheet": "Prices"}, "the workbook has no sheet 'Prices' (sheets: 'Stock', "),
    ("ods", {"sheet": 7}, "mapping.sheet 7: the workbook has 3 sheet(s)"),
    ("corrupt", {}, "the spreadsheet is not a readable zip"),
    ("damaged", {}, "the XLSX file cannot be read"),
    ("bomb", {}, "the spreadsheet's parts inflate more than 100 times"),
    ("csv", {}, "the file is not a spreadsheet (XLSX, XLSM, XLSB, XLS or ODS)"),
])
async def test_a_bad_sheet_or_file_fails_and_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, kind: str,
        mapping: dict[str, Any], reason: str) -> None:
    good = feed_server.add("/good.xlsx", spreadsheets.xlsx())
    feed_id = await feeds.make_feed(pool, good, resource_type="spreadsheet",
                                    mapping=spreadsheets.MAPPING)
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "succeeded"
    before = await feeds.table_state(pool)
    whole = spreadsheets.xlsx()
    body = {"xlsx": whole, "ods": spreadsheets.ods(),
            "corrupt": whole[:len(whole) - 200],  # the zip's directory is gone
            "damaged": damaged(whole), "csv": b"external_id,qty\nA-1,3\n",
            "bomb": spreadsheets.bomb() if kind == "bomb" else b""}[kind]
    bad = feed_server.add(f"/bad.{kind}", body)
    await pool.execute("UPDATE inventory_feeds SET resource_location = $2, mapping = $3 "
                       "WHERE id = $1", feed_id, bad,
                       orjson.dumps(mapping).decode())
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert reason in run["error"]
    assert await feeds.table_state(pool) == before


def damaged(data: bytes) -> bytes:
    """The workbook with its sheet's XML cut in the middle (a whole zip around it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            part = src.read(info)
            dst.writestr(info, part[:len(part) // 2] if "worksheets/" in info.filename
                         else part)
    return out.getvalue()


async def test_a_google_sheets_link_read_as_its_xlsx_export(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """The local server answers as the export endpoint does: a redirect to the file."""
    sheets = replace(settings, sheets_origin=feed_server.url(""))
    feed_server.add("/usercontent/book.xlsx", spreadsheets.xlsx(), content_type=XLSX)
    route = "/spreadsheets/d/Doc-9/export"
    feed_server.add(route, redirect=feed_server.url("/usercontent/book.xlsx"))
    feed_id, run = await pull(pool, sheets,
                              feed_server.url("/spreadsheets/d/Doc-9/edit?usp=sharing"),
                              resource_type="spreadsheet", mapping=spreadsheets.MAPPING)
    assert run["status"] == "succeeded", run["error"]
    assert feed_server.routes[route].queries == ["format=xlsx"]
    assert landed(await feeds.items(pool, feed_id))["A-1"][:3] == (
        "4006381333931", "19.9", 7)


async def test_a_preview_reads_the_whole_workbook_then_its_first_rows(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """Served in small chunks: no record before the last byte, then the first two rows."""
    url = feed_server.add("/stock.xls", spreadsheets.xls(), chunk=512)
    feed = Feed(id=7, name="f", enabled=True, resource_type="spreadsheet",
                resource_location=url, delimiter=None, csv_has_header=True,
                decimal_notation="decimal", encoding=None,
                mapping=parse_mapping(spreadsheets.MAPPING, "spreadsheet"),
                provider_archived=False)
    result = await run_preview(feed, url, settings, 2, head_bytes=1024)
    assert (result.format, result.header, result.problems) == (
        "xls", spreadsheets.EXPECTED_HEADER, [])
    assert [(r.position, r.values["barcode"], r.values["retailPrice"],
             r.values["inventoryQuantity"]) for r in result.rows] == [
        (3, "4006381333931", "19.9", "7"), (5, "12345678", "0.3", "1")]


async def test_import_of_a_local_workbook_prints_its_rows(
        pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    """`feed-worker import --url file:///...ods`: the progress counts the sheet's rows (read
    once the file is whole), the summary the run's."""
    path = tmp_path / "stock.ods"
    path.write_bytes(spreadsheets.ods())
    feed_id = await feeds.make_feed(pool, None, resource_type="spreadsheet",
                                    mapping=spreadsheets.MAPPING)
    code, _, err = await feed_worker("import", "--feed", str(feed_id), "--url", path.as_uri(),
                                     database_url=db_url)
    assert code == 0, err
    progress = [line for line in err.splitlines() if line.startswith("progress ")]
    assert progress[-1].endswith("rows_read=4"), progress
    assert "succeeded: rows_read=4 inserted=3" in err
    assert "rejected=1" in err


async def test_a_spreadsheet_feed_made_and_previewed_through_the_api(
        api: ApiProcess, admin: Client, pool: asyncpg.Pool, feed_server: FeedServer) -> None:
    url = feed_server.add("/stock.xlsx", spreadsheets.xlsx(), content_type=XLSX)
    p = await provider(admin)
    f = await feed(admin, p, resourceType="spreadsheet", resourceLocation=url,
                   mapping={**spreadsheets.MAPPING, "headerRow": 2})
    assert f["resourceType"] == "spreadsheet"
    status, got, _ = await admin.call("GET", f"/api/inventory-feeds/{f['id']}/preview.json"
                                             "?rows=2")
    assert status == 200, got
    assert (got["format"], got["header"], got["ok"]) == (
        "xlsx", spreadsheets.EXPECTED_HEADER, True)
    assert [(r["position"], r["values"]["barcode"]) for r in got["rows"]] == [
        (3, "4006381333931"), (5, "12345678")]
    status, got, _ = await admin.call("POST", "/api/inventory-feeds.json", {
        "dropshipProviderId": p, "name": "bad", "resourceType": "spreadsheet",
        "mapping": {"sheet": -2}})
    assert status == 422
    assert got["error"]["details"][0]["pointer"] == "/mapping/sheet"
    assert await feeds.items(pool, f["id"]) == {}
