"""The ODS stream reads a sheet's cells as python-calamine does (the reader it replaces,
kept as the reference here), repeated cells and rows included, and chooses the sheet as
for an XLSX."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.support.spreadsheets import ods_package
from worker.errors import FeedError
from worker.parsers.cells import row_texts
from worker.parsers.odsstream import OdsStream

AWKWARD = "".join([
    '<table:table-cell office:value-type="float" office:value="4006381333931"><text:p>x'
    "</text:p></table:table-cell>",
    '<table:table-cell office:value-type="float" office:value="19.9"/>',
    '<table:table-cell office:value-type="percentage" office:value="0.25"/>',
    '<table:table-cell office:value-type="currency" office:currency="EUR" office:value="-3.5"/>',
    '<table:table-cell office:value-type="date" office:date-value="2026-12-05"/>',
    '<table:table-cell office:value-type="date" office:date-value="2026-12-05T10:15:00"/>',
    '<table:table-cell office:value-type="date" office:date-value="2026-12-05T10:15:00.5"/>',
    '<table:table-cell office:value-type="time" office:time-value="PT10H15M00S"/>',
    '<table:table-cell office:value-type="time" office:time-value="PT36H00M01.5S"/>',
    '<table:table-cell office:value-type="boolean" office:boolean-value="true"/>',
    '<table:table-cell office:value-type="boolean" office:boolean-value="false"/>',
    '<table:table-cell office:value-type="string"><text:p>a<text:s text:c="3"/>b</text:p>'
    "<text:p>second <text:span>line</text:span></text:p></table:table-cell>",
    '<table:table-cell table:number-columns-repeated="2" office:value-type="float" '
    'office:value="7"/>',
    '<table:table-cell table:number-columns-repeated="3"/>',
    '<table:table-cell office:value-type="float" office:value="1E+20"/>',
    '<table:table-cell office:value-type="float" office:value="0.1"/>',
    '<table:table-cell office:value-type="float" office:value="23.680999999999997"/>',
    "<table:covered-table-cell/>",
    '<table:table-cell office:value-type="string"><text:p>&lt;tag&gt; &amp; more</text:p>'
    "</table:table-cell>",
])


def _table(name: str, rows: str, style: str = "") -> str:
    styled = f' table:style-name="{style}"' if style else ""
    return f'<table:table table:name="{name}"{styled}>{rows}</table:table>'


def _row(cells: str, repeat: int = 1) -> str:
    repeated = f' table:number-rows-repeated="{repeat}"' if repeat > 1 else ""
    return f"<table:table-row{repeated}>{cells}</table:table-row>"


def _write(tmp_path: Path, tables: str, styles: str = "") -> str:
    data = _with_styles(tables, styles) if styles else ods_package(tables)
    path = tmp_path / "book.ods"
    path.write_bytes(data)
    return str(path)


def _with_styles(tables: str, styles: str) -> bytes:
    """The package with automatic styles (where a sheet is hidden) before its body."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(ods_package(tables))) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            part = src.read(info)
            if info.filename == "content.xml":
                part = part.replace(
                    b" office:version=\"1.2\">",
                    b' xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
                    b'office:version="1.2"><office:automatic-styles>' + styles.encode()
                    + b"</office:automatic-styles>", 1)
            dst.writestr(info, part)
    return out.getvalue()


def _read(path: str, sheet: str | int | None = None) -> list[tuple[int, list[str]]]:
    stream = OdsStream(path, sheet)
    try:
        return [(n, texts) for n, texts, _ in stream.rows()]
    finally:
        stream.close()


def _calamine(path: str, index: int) -> list[tuple[int, list[str]]]:
    from python_calamine import CalamineWorkbook

    sheet = CalamineWorkbook.from_path(path).get_sheet_by_index(index)
    top, left = sheet.start or (0, 0)
    out = []
    for n, row in enumerate(sheet.iter_rows(), start=top + 1):
        texts = [""] * left + row_texts(row)
        while texts and not texts[-1]:
            texts.pop()
        if texts:
            out.append((n, texts))
    return out


def test_cells_read_as_calamine_reads_them(tmp_path: Path) -> None:
    rows = (_row('<table:table-cell office:value-type="string"><text:p>h</text:p>'
                 "</table:table-cell>")
            + _row(AWKWARD, 2)
            + _row('<table:table-cell table:number-columns-repeated="1024"/>', 5)
            + _row('<table:table-cell table:number-columns-repeated="2"/>' + AWKWARD))
    path = _write(tmp_path, _table("S", rows))
    mine = _read(path)
    assert mine == _calamine(path, 0)
    assert [n for n, _ in mine] == [1, 2, 3, 9]
    assert mine[1][1][:4] == ["4006381333931", "19.9", "0.25", "-3.5"]
    assert mine[1][1][7:9] == ["10:15:00", "PT36H00M01.5S"]
    assert mine[1][1][11] == "a   b\nsecond line"


def test_the_million_empty_rows_at_a_sheets_end_cost_nothing(tmp_path: Path) -> None:
    rows = (_row('<table:table-cell office:value-type="float" office:value="1"/>')
            + _row('<table:table-cell table:number-columns-repeated="16384"/>', 1_048_575))
    assert _read(_write(tmp_path, _table("S", rows))) == [(1, ["1"])]


def test_the_sheet_by_name_by_index_else_the_first_visible(tmp_path: Path) -> None:
    cell = '<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>'
    tables = (_table("Hidden", _row(cell.format("h")), style="ta2")
              + _table("Stock", _row(cell.format("s")))
              + _table("Other", _row(cell.format("o"))))
    styles = ('<style:style style:name="ta2" style:family="table">'
              '<style:table-properties table:display="false"/></style:style>')
    path = _write(tmp_path, tables, styles)
    assert _read(path) == [(1, ["s"])]
    assert _read(path, "Other") == [(1, ["o"])]
    assert _read(path, 0) == [(1, ["h"])]
    with pytest.raises(FeedError, match=r"no sheet 'Prices' \(sheets: 'Hidden', 'Stock', "
                                        r"'Other'\)"):
        _read(path, "Prices")
    with pytest.raises(FeedError, match=r"mapping.sheet 5: the workbook has 3 sheet"):
        _read(path, 5)
    only_hidden = _write(tmp_path, _table("Hidden", _row(cell.format("h")), style="ta2"),
                         styles)
    assert _read(only_hidden) == [(1, ["h"])]
