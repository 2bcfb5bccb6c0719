"""The CSV benchmark's feed (feed1.csv) written again as an XLSX workbook, as Excel writes
one: texts in the shared-strings table, numbers as numbers (barcodes, prices, quantities,
grams), a header row, one sheet named "Stock".

Same items, same order as feed1.csv (so `db.read_sample(feed1.csv)` is also the sample of
the XLSX import). Written by hand (zipfile and XML text) rather than by a library: openpyxl
takes minutes for 1M rows, this about half a minute. Reused from disk when current.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

from tests.bench import feedgen, formatgen

FORMAT_VERSION = 2
SHEET = "Stock"
# The feed's mapping: the header names are feed1.csv's, so the template maps them itself.
MAPPING = {"sheet": SHEET}
_NUMERIC = (2, 4, 5, 6, 7)  # barcode, retail_price, compare_at_price, quantity, grams

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
    'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sharedStrings+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.styles+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    f'<sheets><sheet name="{SHEET}" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/sharedStrings" Target="sharedStrings.xml"/>'
    '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/styles" Target="styles.xml"/></Relationships>'
)
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
    '<borders count="1"><border/></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
    '</cellStyleXfs><cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" '
    'xfId="0"/></cellXfs></styleSheet>'
)
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
_SHEET_FOOT = "</sheetData></worksheet>"
_COLS = "ABCDEFGH"


class _Strings:
    """The shared-strings table: each distinct text once, by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def of(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.index)
        return found


def _row(n: int, row: list[str], strings: _Strings, numeric: tuple[int, ...] = _NUMERIC
         ) -> str:
    cells = []
    for k, value in enumerate(row):
        if not value:
            continue
        ref = f"{_COLS[k]}{n}"
        if k in numeric:
            cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        else:
            cells.append(f'<c r="{ref}" t="s"><v>{strings.of(value)}</v></c>')
    return f'<row r="{n}">{"".join(cells)}</row>'


def _sheet(source: Path, strings: _Strings) -> Iterator[bytes]:
    yield _SHEET_HEAD.encode()
    yield _row(1, list(feedgen.COLUMNS), strings, ()).encode()
    n = 1
    for block in formatgen._blocks(source):
        out = []
        for row in block:
            n += 1
            out.append(_row(n, row, strings))
        yield "".join(out).encode()
    yield _SHEET_FOOT.encode()


def _shared(strings: _Strings) -> Iterator[bytes]:
    count = len(strings.index)
    yield ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="http://'
           f'schemas.openxmlformats.org/spreadsheetml/2006/main" count="{count}" '
           f'uniqueCount="{count}">').encode()
    texts = list(strings.index)
    for start in range(0, count, 50_000):
        yield "".join(f"<si><t>{escape(t)}</t></si>" for t in texts[start:start + 50_000]
                      ).encode()
    yield b"</sst>"


def write_xlsx(source: Path, target: Path) -> None:
    """feed1.csv's rows as an XLSX workbook (through a .tmp file)."""
    tmp = target.with_name(target.name + ".tmp")
    strings = _Strings()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        z.writestr("xl/styles.xml", _STYLES)
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            for data in _sheet(source, strings):
                f.write(data)
        with z.open("xl/sharedStrings.xml", "w", force_zip64=True) as f:
            for data in _shared(strings):
                f.write(data)
    tmp.replace(target)


def ensure_xlsx(csv_files: feedgen.FeedFiles, seed: int) -> tuple[Path, bool]:
    """feed1.xlsx beside feed1.csv unless current; returns it and whether it was written."""
    source = csv_files.base
    target = source.with_name("feed1.xlsx")
    meta_file = target.with_name(target.name + ".meta.json")
    meta = {"version": FORMAT_VERSION, "rows": csv_files.rows, "seed": seed,
            "source_bytes": source.stat().st_size}
    if target.exists() and meta_file.exists() and json.loads(meta_file.read_text()) == {
            **meta, "bytes": target.stat().st_size}:
        return target, False
    write_xlsx(source, target)
    meta_file.write_text(json.dumps({**meta, "bytes": target.stat().st_size}))
    return target, True
