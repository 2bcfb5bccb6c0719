"""The same awkward workbook as XLSX (openpyxl), XLS (xlwt) and ODS (written by hand):

  row 1  a title merged over A1:F1
  row 2  the header: external_id, barcode, retail_price, Stock (merged over D2:E2),
         Updated, name
  row 3  A-1, 4006381333931 (a number), 19.9, 3, 4, 2026-12-05 (a date), Hose
  row 4  empty
  row 5  A-2, 12345678, 0.1 + 0.2, 0, 1, 2026-12-05 10:15 (a date and time), 7
  row 6  B-3, 40063813339310 (GTIN-14), 1234.5, 7, (empty), 2026-01-31, Tap
  row 7  C-4, (empty), 2.5, "lots" (text in a quantity: a reject)
  a second sheet "Other" with one row, and a sheet "Empty"

The sheet is "Stock"; a mapping reads it as MAPPING says.
"""

from __future__ import annotations

import datetime
import io
import zipfile
from typing import Any
from xml.sax.saxutils import escape

SHEET = "Stock"
HEADER = ["external_id", "barcode", "retail_price", "Stock", None, "Updated", "name"]
ROWS: list[list[Any] | None] = [
    ["A-1", 4006381333931, 19.9, 3, 4, datetime.date(2026, 12, 5), "Hose"],
    None,
    ["A-2", 12345678, 0.1 + 0.2, 0, 1, datetime.datetime(2026, 12, 5, 10, 15), 7],
    ["B-3", 40063813339310, 1234.5, 7, None, datetime.date(2026, 1, 31), "Tap"],
    ["C-4", None, 2.5, "lots", None, None, "Bad"],
]
TITLE = "Acme price list, December"
# The quantity is the sum of the two columns under the merged "Stock" header.
MAPPING = {"sheet": SHEET, "fields": {"description": "Updated"},
           "rules": {"quantity": {"sum": ["Stock", "Stock 2"]}}}
# What the sheet's cells read as, row by row (the rows' numbers in the sheet).
EXPECTED = {
    3: ["A-1", "4006381333931", "19.9", "3", "4", "2026-12-05", "Hose"],
    5: ["A-2", "12345678", "0.3", "0", "1", "2026-12-05T10:15:00", "7"],
    6: ["B-3", "40063813339310", "1234.5", "7", "", "2026-01-31", "Tap"],
    7: ["C-4", "", "2.5", "lots", "", "", "Bad"],
}
EXPECTED_HEADER = ["external_id", "barcode", "retail_price", "Stock", "Stock 2", "Updated",
                   "name"]


def xlsx() -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = SHEET
    ws.append([TITLE])
    ws.merge_cells("A1:F1")
    ws.append(HEADER)
    ws.merge_cells("D2:E2")
    for row in ROWS:
        ws.append(row or [])
    wb.create_sheet("Other").append(["x", "y"])
    wb.create_sheet("Empty")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def xls() -> bytes:
    import xlwt  # type: ignore[import-untyped]

    wb = xlwt.Workbook()
    ws = wb.add_sheet(SHEET)
    date = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    moment = xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM")
    ws.write_merge(0, 0, 0, 5, TITLE)
    for c, name in enumerate(HEADER):
        if name is not None:
            ws.write(1, c, name)
    ws.merge(1, 1, 3, 4)
    for r, row in enumerate(ROWS, start=2):
        for c, value in enumerate(row or []):
            if value is None:
                continue
            if isinstance(value, datetime.datetime):
                ws.write(r, c, value, moment)
            elif isinstance(value, datetime.date):
                ws.write(r, c, value, date)
            else:
                ws.write(r, c, value)
    wb.add_sheet("Other").write(0, 0, "x")
    wb.add_sheet("Empty")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


_ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"'
)


def _ods_cell(value: Any, span: int = 1) -> str:
    spanned = f' table:number-columns-spanned="{span}"' if span > 1 else ""
    if value is None:
        return f"<table:table-cell{spanned}/>"
    if isinstance(value, datetime.date):  # a datetime too
        kind = f'office:value-type="date" office:date-value="{value.isoformat()}"'
    elif isinstance(value, (int, float)):
        kind = f'office:value-type="float" office:value="{value!r}"'
    else:
        kind = 'office:value-type="string"'
    return (f"<table:table-cell {kind}{spanned}><text:p>{escape(str(value))}</text:p>"
            "</table:table-cell>")


def _ods_table(name: str, rows: list[str]) -> str:
    body = "".join(f"<table:table-row>{r}</table:table-row>" for r in rows)
    return f'<table:table table:name="{name}">{body}</table:table>'


def ods() -> bytes:
    title = _ods_cell(TITLE, 6) + "<table:covered-table-cell/>" * 5
    header = "".join([*map(_ods_cell, HEADER[:3]), _ods_cell("Stock", 2),
                      "<table:covered-table-cell/>", *map(_ods_cell, HEADER[5:])])
    rows = [title, header] + ["".join(_ods_cell(v) for v in (row or [None])) for row in ROWS]
    return ods_package(_ods_table(SHEET, rows) + _ods_table("Other", [_ods_cell("x")])
                       + _ods_table("Empty", []))


def ods_package(tables: str) -> bytes:
    """An ODS file of these <table:table> elements."""
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<office:document-content {_ODS_NS}><office:body><office:spreadsheet>"
        f"{tables}</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest xmlns:manifest='
        '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/'
        'vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path='
        '"content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet",
                   compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def bomb(inflated: int = 20 * 1024 * 1024) -> bytes:
    """The XLSX workbook with a sheet part padded by `inflated` bytes of blanks: a zip that
    inflates over a thousand times."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx())) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            part = src.read(info)
            if info.filename.endswith("sheet1.xml"):
                part = part.replace(b"<sheetData>", b"<sheetData>" + b" " * inflated, 1)
            dst.writestr(info.filename, part)
    return out.getvalue()


WORKBOOKS = {"xlsx": xlsx, "xls": xls, "ods": ods}
