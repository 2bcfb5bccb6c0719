"""Spreadsheet records (worker/parsers/spreadsheet.py) and their cells' texts
(worker/parsers/cells.py), on workbooks written by tests/support/spreadsheets.py."""

from __future__ import annotations

import datetime
import io
import re
import zipfile

import pytest

from tests.support import spreadsheets
from tests.unit.test_decompress import inflate
from worker.errors import FeedError, SourceError
from worker.feedmapping import parse_mapping
from worker.parsers import CutShort, RecordBatch
from worker.parsers.cells import cell_text, number_text
from worker.parsers.sniff import spreadsheet_kind, spreadsheet_undecided
from worker.parsers.spreadsheet import SpreadsheetRecords, ZipLimits, letters


@pytest.mark.parametrize(("value", "text"), [
    (3.0, "3"), (4006381333931.0, "4006381333931"), (40063813339310.0, "40063813339310"),
    (19.9, "19.9"), (0.1 + 0.2, "0.3"), (23.680999999999997, "23.681"), (1e-07, "0.0000001"),
    (-2.5, "-2.5"), (1e20, "100000000000000000000"), (1 / 3, "0.333333333333333"),
])
def test_numbers_read_as_a_spreadsheet_shows_them(value: float, text: str) -> None:
    assert number_text(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (datetime.date(2026, 12, 5), "2026-12-05"),
    (datetime.datetime(2026, 12, 5, 10, 15), "2026-12-05T10:15:00"),
    (datetime.time(10, 30), "10:30:00"), (True, "TRUE"), (False, "FALSE"), (None, ""),
    (7, "7"), ("  keep  ", "  keep  "), (datetime.timedelta(minutes=90), "5400"),
])
def test_other_cells(value: object, text: str) -> None:
    assert cell_text(value) == text


def read(data: bytes, **kwargs: object) -> tuple[SpreadsheetRecords, list[RecordBatch]]:
    records = SpreadsheetRecords(**kwargs)  # type: ignore[arg-type]
    for start in range(0, len(data), 1000):
        assert records.feed(data[start:start + 1000]).rows == []
    records.close()
    return records, list(records.rest())


def rows_of(batches: list[RecordBatch]) -> dict[int, list[str]]:
    return {line: row for b in batches for row, line in zip(b.rows, b.lines, strict=True)}


@pytest.mark.parametrize("kind", ["xlsx", "xls", "ods"])
def test_the_awkward_workbook(kind: str) -> None:
    records, batches = read(spreadsheets.WORKBOOKS[kind](), sheet=spreadsheets.SHEET)
    assert records.details == {"format": kind, "sheet": "Stock"}
    assert records.header == spreadsheets.EXPECTED_HEADER
    # the title row and the empty row are skipped; positions are the sheet's rows
    assert rows_of(batches) == spreadsheets.EXPECTED


def test_sheet_by_index_and_the_first_visible_by_default() -> None:
    data = spreadsheets.xlsx()
    records, batches = read(data, sheet=1)
    assert (records.details["sheet"], records.header, rows_of(batches)) == (
        "Other", ["x", "y"], {})
    records, _ = read(data)
    assert records.details["sheet"] == "Stock"


def test_a_header_row_by_number_and_no_header() -> None:
    records, batches = read(spreadsheets.xlsx(), header_row=3)
    assert records.header == spreadsheets.EXPECTED[3]
    assert sorted(rows_of(batches)) == [5, 6, 7]
    records, batches = read(spreadsheets.xlsx(), has_header=False)
    assert records.header is None
    assert sorted(rows_of(batches)) == [1, 2, 3, 5, 6, 7]


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"sheet": "Prices"}, "the workbook has no sheet 'Prices' (sheets: 'Stock', 'Other', "
                          "'Empty')"),
    ({"sheet": 5}, "mapping.sheet 5: the workbook has 3 sheet(s)"),
    ({"header_row": 40}, "mapping.headerRow 40: the sheet has no such row"),
])
def test_a_sheet_or_header_that_is_not_there(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(FeedError, match="^" + reason.replace("(", r"\(").replace(")", r"\)")):
        read(spreadsheets.xlsx(), **kwargs)


def test_a_corrupt_or_foreign_file_fails_with_its_reason() -> None:
    data = spreadsheets.xlsx()
    with pytest.raises(FeedError, match=r"cannot be read|not a readable zip"):
        read(data[:len(data) // 2])
    records = SpreadsheetRecords()
    records.feed(data[:len(data) // 2])
    with pytest.raises(CutShort, match="ends before its zip directory"):
        records.close(vouched=False)
    with pytest.raises(FeedError, match=r"not a spreadsheet .*: it starts with b'sku,qty"):
        read(b"sku,qty\n1,2\n")
    with pytest.raises(FeedError, match="cannot be read"):
        read(spreadsheets.xls()[:3000])
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("xl/readme.txt", "no workbook")
    with pytest.raises(FeedError, match="the zip holds no spreadsheet"):
        read(other.getvalue())


def test_an_over_long_cell_rejects_its_row() -> None:
    _, batches = read(spreadsheets.xlsx(), max_field_chars=10)
    cap = "characters long, over the 10-character cap (FEED_WORKER_MAX_FIELD_CHARS)"
    assert [e for b in batches for e in b.errors] == [
        (3, "A-1,4006381333931,19.9,3,4,2026-12-05,Hose", f"column B is 13 {cap}"),
        (5, "A-2,12345678,0.3,0,1,2026-12-05T10:15:00,7", f"column F is 19 {cap}"),
        (6, "B-3,40063813339310,1234.5,7,,2026-01-31,Tap", f"column B is 14 {cap}"),
    ]
    assert sorted(rows_of(batches)) == [7]


def test_spreadsheets_known_by_their_first_bytes() -> None:
    assert spreadsheet_kind(spreadsheets.xls()[:512]) == "ole2"
    assert spreadsheet_kind(spreadsheets.xlsx()[:512]) == "office-zip"
    assert spreadsheet_kind(spreadsheets.ods()[:512]) == "office-zip"
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as z:
        z.writestr("stock.csv", "sku,qty\n")
    assert spreadsheet_kind(packed.getvalue()[:512]) is None
    assert spreadsheet_kind(b"sku,qty\n") is None
    assert [letters(n) for n in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


@pytest.mark.parametrize("kind", ["xlsx", "ods", "xls"])
async def test_a_spreadsheet_is_not_inflated_as_a_zip_feed(kind: str) -> None:
    """An XLSX or ODS is a zip: the inflater leaves it whole; a zip holding one is opened."""
    data = spreadsheets.WORKBOOKS[kind]()
    assert await inflate(data, size=100) == (data, "none")
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as z:
        z.writestr(f"stock.{kind}", data)
    assert await inflate(packed.getvalue()) == (data, "zip")


@pytest.mark.parametrize(("raw", "sheet", "header_row"), [
    ({"sheet": "Stock", "headerRow": 2}, "Stock", 2),
    ({"sheet": 0}, 0, None),
    ({}, None, None),
])
def test_a_spreadsheet_mapping_names_its_sheet_and_header_row(
        raw: dict[str, object], sheet: object, header_row: object) -> None:
    mapping = parse_mapping(raw, "spreadsheet")
    assert (mapping.sheet, mapping.header_row) == (sheet, header_row)


@pytest.mark.parametrize(("raw", "resource_type", "reason"), [
    ({"sheet": -1}, "spreadsheet", "mapping.sheet must be the name of a sheet of the "
                                   "spreadsheet or its 0-based index"),
    ({"sheet": True}, "spreadsheet", "mapping.sheet must be the name of a sheet"),
    ({"sheet": 1}, "ftp_csv", "mapping.sheet must be the name of a tab"),
    ({"headerRow": 0}, "spreadsheet", "mapping.headerRow must be the header's row number"),
    ({"headerRow": "2"}, "spreadsheet", "mapping.headerRow must be the header's row number"),
    ({"headerRow": 2}, "json", "mapping.headerRow applies to spreadsheets, not 'json'"),
])
def test_a_bad_sheet_or_header_row_in_the_mapping(raw: dict[str, object], resource_type: str,
                                                  reason: str) -> None:
    with pytest.raises(FeedError, match=re.escape(reason)):
        parse_mapping(raw, resource_type)


def test_a_header_row_without_a_header() -> None:
    with pytest.raises(FeedError, match="csv_has_header is false"):
        parse_mapping({"headerRow": 2, "fields": {"externalId": 0}}, "spreadsheet", False)
    assert parse_mapping({"fields": {"externalId": 0}}, "spreadsheet", False).fields == {
        "externalId": 0}


def test_how_much_of_a_file_tells_a_spreadsheet() -> None:
    xlsx = spreadsheets.xlsx()
    assert [spreadsheet_undecided(xlsx[:n]) for n in (0, 3, 4, 511, 512)] == [
        True, True, True, True, False]
    xls = spreadsheets.xls()
    assert [spreadsheet_undecided(xls[:n]) for n in (0, 7, 8)] == [True, True, False]
    assert not spreadsheet_undecided(b"ext")  # a CSV is known at once
    assert not spreadsheet_undecided(b"P,")


def test_an_empty_sheet_has_no_header_and_no_rows() -> None:
    records, batches = read(spreadsheets.xlsx(), sheet="Empty")
    assert (records.header, batches) == (None, [])


def test_a_missing_sheet_is_not_taken_for_a_cut_download() -> None:
    records = SpreadsheetRecords(sheet="Prices")
    records.feed(spreadsheets.xlsx())
    with pytest.raises(FeedError, match="no sheet 'Prices'") as caught:
        records.close(vouched=False)
    assert not isinstance(caught.value, CutShort)


TWO_ROW_HEADER = [["SKU", "Stock", None, "Price"], [None, "Berlin", "Paris", None],
                  ["A-1", 3, 4, 9.5]]


def two_row_header_xlsx() -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for row in TWO_ROW_HEADER:
        ws.append(row)
    for cells in ("A1:A2", "B1:C1", "D1:D2"):
        ws.merge_cells(cells)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def two_row_header_ods() -> bytes:
    """The same sheet as an ODS file: spans on the cells, covered cells where they reach."""
    def cell(value: object, across: int = 1, down: int = 1) -> str:
        spans = (f' table:number-columns-spanned="{across}"' if across > 1 else "") + (
            f' table:number-rows-spanned="{down}"' if down > 1 else "")
        kind = ('office:value-type="float" office:value="{v}"' if not isinstance(value, str)
                else 'office:value-type="string"').format(v=value)
        return f"<table:table-cell {kind}{spans}><text:p>{value}</text:p></table:table-cell>"

    covered = "<table:covered-table-cell/>"
    rows = [cell("SKU", down=2) + cell("Stock", across=2) + covered + cell("Price", down=2),
            covered + cell("Berlin") + cell("Paris") + covered,
            cell("A-1") + cell(3) + cell(4) + cell(9.5)]
    body = "".join(f"<table:table-row>{r}</table:table-row>" for r in rows)
    return spreadsheets.ods_package(f'<table:table table:name="Sheet1">{body}</table:table>')


@pytest.mark.parametrize("make", [two_row_header_xlsx, two_row_header_ods])
def test_a_two_row_header_with_merged_cells(make: object) -> None:
    data = make()  # type: ignore[operator]
    records, batches = read(data, header_row=2)
    assert records.header == ["SKU", "Berlin", "Paris", "Price"]
    assert rows_of(batches) == {3: ["A-1", "3", "4", "9.5"]}
    records, _ = read(data, header_row=1)
    assert records.header == ["SKU", "Stock", "Stock 2", "Price"]


def test_a_zip_bomb_is_refused_before_it_is_opened() -> None:
    data = spreadsheets.xlsx()
    with pytest.raises(SourceError, match=r"parts inflate to [\d,]+ bytes, past 1,000 "
                                          r"\(FEED_WORKER_MAX_DECOMPRESSED_BYTES\)"):
        read(data, limits=ZipLimits(1000))
    bomb = spreadsheets.bomb()
    with pytest.raises(SourceError, match=r"inflate more than 100 times: [\d,]+ bytes to "
                                          r"[\d,]+ bytes \(FEED_WORKER_MAX_INFLATION_RATIO\)"):
        read(bomb, limits=ZipLimits(10**10, 100))
    records, _ = read(data, limits=ZipLimits(10**10, 100))  # a workbook as it comes: read
    assert records.header == spreadsheets.EXPECTED_HEADER


def test_error_cells_and_formulas_without_a_saved_result_are_empty() -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["external_id", "retail_price", "in_stock"])
    ws.append(["A", "#N/A", True])
    ws["B2"].data_type = "e"  # an error cell, as Excel saves #N/A
    ws.append(["B", "=1+1", False])  # openpyxl saves no result
    out = io.BytesIO()
    wb.save(out)
    _, batches = read(out.getvalue())
    assert rows_of(batches) == {2: ["A", "", "TRUE"], 3: ["B", "", "FALSE"]}
