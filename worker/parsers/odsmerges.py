"""The merged cells of an ODS sheet's first rows, which python-calamine does not report (it
does for XLSX and XLS): read from the file's content.xml, streamed with lxml and left as
soon as the rows asked for are passed, so a large sheet costs no more than its head.

Ranges are given as calamine gives an XLSX's: ((first row, first column), (last row, last
column)), counted from 0.
"""

from __future__ import annotations

import zipfile

from lxml import etree

from worker.parsers.odsstream import (
    _COLUMNS_REPEATED,
    _ROWS_REPEATED,
    _T_CELLS,
    _T_NAME,
    _T_ROW,
    _T_TABLE,
    _TABLE,
    _count,
)

_COLUMNS_SPANNED = f"{{{_TABLE}}}number-columns-spanned"
_ROWS_SPANNED = f"{{{_TABLE}}}number-rows-spanned"

Merge = tuple[tuple[int, int], tuple[int, int]]


def ods_merges(path: str, sheet: str, rows: int) -> list[Merge]:
    """The merged cells that start in the first `rows` rows of `sheet`; [] when the file
    cannot be read so (the reader itself then says why)."""
    try:
        with zipfile.ZipFile(path) as z, z.open("content.xml") as content:
            return _merges(content, sheet, rows)
    except (KeyError, OSError, zipfile.BadZipFile, etree.XMLSyntaxError):
        return []


def _merges(content: object, sheet: str, rows: int) -> list[Merge]:
    out: list[Merge] = []
    inside = False
    row = column = 0
    events = etree.iterparse(content, events=("start", "end"), resolve_entities=False,
                             no_network=True, load_dtd=False, huge_tree=False)
    for event, el in events:
        tag = el.tag
        if tag == _T_TABLE:
            if event == "start":
                inside, row = el.get(_T_NAME) == sheet, 0
            elif inside:
                break
        elif not inside:
            if event == "end":
                el.clear()
        elif tag == _T_ROW:
            if event == "start":
                column = 0
                continue
            row += _count(el.get(_ROWS_REPEATED))
            el.clear()
            if row >= rows:
                break
        elif tag in _T_CELLS and event == "end":
            across, down = _count(el.get(_COLUMNS_SPANNED)), _count(el.get(_ROWS_SPANNED))
            if across > 1 or down > 1:
                out.append(((row, column), (row + down - 1, column + across - 1)))
            column += _count(el.get(_COLUMNS_REPEATED))
    return out
