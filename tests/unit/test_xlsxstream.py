"""The streaming XLSX reader (worker/parsers/xlsxstream.py) against python-calamine, the
reader it replaced for XLSX: the same workbooks, written in the shapes writers use, must
read as the same texts row by row."""

from __future__ import annotations

import datetime
import io
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from tests.support import spreadsheets
from worker.errors import FeedError
from worker.parsers.cells import reject_error_cells
from worker.parsers.spreadsheet import SpreadsheetRecords
from worker.parsers.xlsxparts import DATETIME, DURATION, OTHER, number_format_kind
from worker.parsers.xlsxstream import SheetStream

Rows = dict[int, list[str]]


def awkward_cells() -> bytes:
    """Every kind of cell: numbers as writers store them, dates in several styles, times,
    durations, booleans, formulas with and without results, texts with markup and spaces,
    sparse rows and columns."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Cells"
    ws.append(["sku", "price", "when", "at", "flag", "note", "ean"])
    ws.append(["A&B <1>", 19.9, datetime.date(2026, 12, 5), datetime.time(10, 30), True,
               "  padded  ", 4006381333931])
    ws.append(["Grüße", 0.1 + 0.2, datetime.datetime(2026, 1, 31, 23, 59, 59), None, False,
               "=1+1", 40063813339310])
    ws.append([None, -2.5, datetime.datetime(1900, 1, 15), datetime.time(0, 0, 1), None,
               "line\nbreak", 1e20])
    ws.append([])
    ws["C7"] = 45321.25
    ws["C7"].number_format = "dd/mm/yyyy hh:mm"
    ws["D7"] = 1.5
    ws["D7"].number_format = "[h]:mm:ss"
    ws["E7"] = 0.25
    ws["E7"].number_format = "h:mm AM/PM"
    ws["F7"] = 1234.5
    ws["F7"].number_format = '#,##0.00 "kg"'
    ws["K9"] = "far"
    ws["A10"] = 7
    ws["A10"].number_format = "@"
    ws["B10"] = "=A10*2"
    ws["C10"] = 1e-07
    ws["D10"] = 123456789.123456789
    wb.create_sheet("Second").append(["x", 1])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def rewrite(data: bytes, part: str, change: Callable[[bytes], bytes]) -> bytes:
    """The workbook with one part's bytes changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info, change(body) if info.filename == part else body)
    return out.getvalue()


def pretty(body: bytes) -> bytes:
    return etree.tostring(etree.fromstring(body), pretty_print=True, xml_declaration=True,
                          encoding="UTF-8", standalone=True)


def prefixed(body: bytes) -> bytes:
    """The part with its SpreadsheetML elements written with an `x:` prefix."""
    text = body.decode()
    text = text.replace('xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
                        'xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"')
    text = re.sub(r"<(/?)(?!\?)([A-Za-z]+)(?=[\s/>])", r"<\1x:\2", text)
    return text.encode()


def shared_strings(data: bytes) -> bytes:
    """The workbook with its inline strings (as openpyxl writes texts) moved into a
    shared-strings table, as Excel keeps them (rich text kept as its runs)."""
    items: list[bytes] = []

    def share(found: re.Match[bytes]) -> bytes:
        items.append(found.group(3))
        return found.group(1) + b't="s"' + found.group(2) + b"><v>%d</v></c>" % (
            len(items) - 1)

    sheets = [n for n in zipfile.ZipFile(io.BytesIO(data)).namelist()
              if n.startswith("xl/worksheets/")]
    for name in sheets:
        data = rewrite(data, name, lambda body: re.sub(
            rb'(<c [^>]*?)t="inlineStr"([^>]*)><is>(.*?)</is></c>', share, body, flags=re.S))
    table = (b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats'
             b'.org/spreadsheetml/2006/main" count="%d">' % len(items)
             + b"".join(b"<si>" + i + b"</si>" for i in items) + b"</sst>")
    rel = (b'<Relationship Id="rIdS" Type="http://schemas.openxmlformats.org/officeDocument/'
           b'2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
    data = rewrite(data, "xl/_rels/workbook.xml.rels",
                   lambda body: body.replace(b"</Relationships>", rel))
    kind = (b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxml'
            b'formats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
    data = rewrite(data, "[Content_Types].xml", lambda body: body.replace(b"</Types>", kind))
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as z:
        z.writestr("xl/sharedStrings.xml", table)
    return out.getvalue()


def no_refs(body: bytes) -> bytes:
    """Cells without their `r` (writers may leave it out when cells follow each other)."""
    return re.sub(rb'<c r="[A-Z]+[0-9]+"', b"<c", body)


def calamine_rows(path: str, sheet: str) -> Rows:
    from python_calamine import CalamineWorkbook

    from worker.parsers.cells import row_texts

    workbook = CalamineWorkbook.from_path(path)
    data = workbook.get_sheet_by_name(sheet)
    start = data.start or (0, 0)
    out = {}
    for number, row in enumerate(data.iter_rows(), start=start[0] + 1):
        texts = [""] * start[1] + row_texts(row)
        if any(texts):
            out[number] = _trimmed(texts)
    return out


def stream_rows(path: str, sheet: str) -> Rows:
    stream = SheetStream(path, sheet)
    try:
        return {n: _trimmed(t) for n, t, _ in stream.rows() if any(t)}
    finally:
        stream.close()


def _trimmed(texts: list[str]) -> list[str]:
    while texts and not texts[-1]:
        texts = texts[:-1]
    return texts


def on_disk(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "book.xlsx"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("shape", ["inline strings", "shared strings", "pretty", "prefixed",
                                   "no refs"])
def test_the_stream_reads_what_calamine_reads(shape: str, tmp_path: Path) -> None:
    data = awkward_cells()
    if shape != "inline strings":
        data = shared_strings(data)
    sheet = "xl/worksheets/sheet1.xml"
    change = {"pretty": pretty, "prefixed": prefixed, "no refs": no_refs}.get(shape)
    if change is not None:
        data = rewrite(data, sheet, change)
    if shape == "prefixed":
        data = rewrite(data, "xl/sharedStrings.xml", prefixed)
        assert b"<x:si>" in zipfile.ZipFile(io.BytesIO(data)).read("xl/sharedStrings.xml")
    path = on_disk(data, tmp_path)
    expected = calamine_rows(path, "Cells")
    assert expected[2][:3] == ["A&B <1>", "19.9", "2026-12-05"]  # the sheet is as meant
    assert stream_rows(path, "Cells") == expected


def test_the_awkward_workbook_reads_the_same_either_way(tmp_path: Path) -> None:
    path = on_disk(shared_strings(spreadsheets.xlsx()), tmp_path)
    assert stream_rows(path, "Stock") == calamine_rows(path, "Stock")


@pytest.mark.parametrize(("code", "kind"), [
    ("DD/MM/YY", DATETIME), ("H:MM:SS;@", DATETIME), ("[h]:mm:ss", DURATION),
    ("[ss]", DURATION), ('"$"#,##0_);[Red]("$"#,##0)', OTHER), ("0_ ;[Red]\\-0\\ ", OTHER),
    ("\\Y000000", OTHER), ('#,##0.0####" YMD"', OTHER), ("#,##0*y", OTHER),
    ("*-yyyy-mm-dd", DATETIME), ("ha/p\\\\m", DATETIME), ("[>=100][Magenta].00", OTHER),
    ("General", OTHER), ("0.00", OTHER), ("yyyy-mm-dd", DATETIME),
])
def test_number_formats_that_show_dates(code: str, kind: int) -> None:
    assert number_format_kind(code) == kind


def test_a_large_shared_strings_table_stays_out_of_memory(tmp_path: Path) -> None:
    """Texts are looked up in the table's file: every one of 50,000 distinct texts (with
    markup, spaces and a rich-text one among them) reads back in its cell."""
    import openpyxl
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["sku", "name"])
    for i in range(50_000):
        ws.append([f"S-{i}", f" name <{i}> & more "])
    ws["B3"] = CellRichText(["bold ", TextBlock(InlineFont(b=True), "part")])
    out = io.BytesIO()
    wb.save(out)
    path = on_disk(shared_strings(out.getvalue()), tmp_path)
    assert b"<si>" in zipfile.ZipFile(path).read("xl/sharedStrings.xml")
    rows = stream_rows(path, "Sheet")
    assert len(rows) == 50_001
    assert rows[50_001] == ["S-49999", " name <49999> & more "]
    assert rows[3] == ["S-1", "bold part"]
    assert rows == calamine_rows(path, "Sheet")


def test_an_error_cell_in_a_mapped_column_rejects_its_row() -> None:
    """#N/A and #DIV/0! read as empty; a row whose read column holds one is a reject with
    the cell's column and error, one whose error is in a column nothing reads is kept."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["sku", "price", "note"])
    ws.append(["A", "#N/A", "x"])
    ws["B2"].data_type = "e"
    ws.append(["B", 3, "#DIV/0!"])
    ws["C3"].data_type = "e"
    ws.append(["C", 4, "y"])
    out = io.BytesIO()
    wb.save(out)
    records = SpreadsheetRecords()
    records.feed(out.getvalue())
    records.close()
    batch, = records.rest()
    assert batch.rows == [["A", "", "x"], ["B", "3", ""], ["C", "4", "y"]]
    assert batch.cell_errors == [(2, 1, "#N/A"), (3, 2, "#DIV/0!")]
    kept = reject_error_cells(batch, {0, 1}, ",")
    assert (kept.rows, list(kept.lines)) == ([["B", "3", ""], ["C", "4", "y"]], [3, 4])
    assert kept.errors == [(2, "A,,x", "column B holds the error #N/A")]
    assert reject_error_cells(batch, {0}, ",") is batch


def test_a_cut_or_corrupt_sheet_part_fails_with_its_reason() -> None:
    data = rewrite(awkward_cells(), "xl/worksheets/sheet1.xml",
                   lambda body: body[:len(body) // 2] + b"<c r=")
    records = SpreadsheetRecords(sheet="Cells")
    records.feed(data)
    records.close()  # the rows so far are read
    with pytest.raises(FeedError, match="the XLSX file cannot be read: sheet 'Cells': the "
                                        "part ends inside its <sheetData> element"):
        list(records.rest())


def test_the_temporary_files_go_with_the_records() -> None:
    before = set(Path(tempfile.gettempdir()).glob("feed-*"))
    records = SpreadsheetRecords()
    records.feed(awkward_cells())
    records.close()
    assert records.header == ["sku", "price", "when", "at", "flag", "note", "ean", "", "",
                              "", ""]
    next(iter(records.rest()))
    del records
    assert set(Path(tempfile.gettempdir()).glob("feed-*")) <= before
