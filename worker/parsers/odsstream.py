"""One sheet of an ODS file read as a stream of rows, in flat memory: its content.xml is
inflated and parsed by lxml as it goes (iterparse), each row let go of once read, so a
sheet of millions of rows costs what one row does.

A cell reads as python-calamine reads it (worker/parsers/cells.py writes the text): a
number (`float`, `percentage`, `currency`) by the shortest text of its value, a date as
ISO text, a time (`PT10H15M00S`) as a time of day (`10:15:00`), `TRUE`/`FALSE`, a text cell as its
paragraphs joined by line breaks (`<text:s/>` spaces, tabs and line breaks kept); a cell
without a value type is empty. Repeated cells and rows (`number-columns-repeated`,
`number-rows-repeated`) count as many; empty ones are never written out, so the default
thousand empty columns or million empty rows at a sheet's end cost nothing.

The sheet: by name, by 0-based index, else the first one not hidden (its table style's
`table:display="false"`), as worker/parsers/xlsxstream.choose_sheet chooses an XLSX's.
"""

from __future__ import annotations

import datetime
import re
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from lxml import etree

from worker.errors import FeedError
from worker.parsers.cells import cell_text, number_text
from worker.parsers.xlsxcells import Row

_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_T_TABLE = f"{{{_TABLE}}}table"
_T_ROW = f"{{{_TABLE}}}table-row"
_T_CELLS = (f"{{{_TABLE}}}table-cell", f"{{{_TABLE}}}covered-table-cell")
_T_NAME = f"{{{_TABLE}}}name"
_T_STYLE_NAME = f"{{{_TABLE}}}style-name"
_T_DISPLAY = f"{{{_TABLE}}}display"
_ROWS_REPEATED = f"{{{_TABLE}}}number-rows-repeated"
_COLUMNS_REPEATED = f"{{{_TABLE}}}number-columns-repeated"
_VALUE_TYPE = f"{{{_OFFICE}}}value-type"
_VALUE = f"{{{_OFFICE}}}value"
_DATE = f"{{{_OFFICE}}}date-value"
_TIME = f"{{{_OFFICE}}}time-value"
_BOOLEAN = f"{{{_OFFICE}}}boolean-value"
_STRING = f"{{{_OFFICE}}}string-value"
_P = f"{{{_TEXT}}}p"
_S = f"{{{_TEXT}}}s"
_TAB = f"{{{_TEXT}}}tab"
_BREAK = f"{{{_TEXT}}}line-break"
_C = f"{{{_TEXT}}}c"
_S_STYLE = f"{{{_STYLE}}}style"
_S_NAME = f"{{{_STYLE}}}name"
_S_TABLE_PROPS = f"{{{_STYLE}}}table-properties"
_NUMBERS = ("float", "percentage", "currency")
_DURATION = re.compile(r"-?P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?")
MAX_COLUMNS = 16_384  # past the widest sheet a spreadsheet program makes


class OdsStream:
    """`rows()` once; `name` once the sheet's first row (or the end) has been read."""

    def __init__(self, path: str, sheet: str | int | None) -> None:
        self._zip = zipfile.ZipFile(path)
        try:
            self._content: IO[bytes] = self._zip.open("content.xml")
        except KeyError:
            self._zip.close()
            raise FeedError("the ODS file has no content.xml") from None
        self.wanted = sheet
        self.name: str | None = None

    def rows(self) -> Iterator[Row]:
        hidden: set[str] = set()
        names: list[str] = []
        inside = False
        number = 0
        events = etree.iterparse(self._content, events=("start", "end"),
                                 tag=(_T_TABLE, _T_ROW, _S_STYLE), resolve_entities=False,
                                 no_network=True, load_dtd=False, huge_tree=True)
        for event, el in events:
            tag = el.tag
            if tag == _T_TABLE:
                if event == "start":
                    name = el.get(_T_NAME) or f"Sheet{len(names) + 1}"
                    names.append(name)
                    inside = self._chosen(name, len(names) - 1,
                                          el.get(_T_STYLE_NAME) in hidden)
                    if inside:
                        self.name, number = name, 0
                elif inside:
                    return
                else:
                    _drop(el)
                continue
            if event != "end":
                continue
            if tag == _S_STYLE:
                props = el.find(_S_TABLE_PROPS)
                if props is not None and props.get(_T_DISPLAY) == "false":
                    hidden.add(el.get(_S_NAME) or "")
            elif inside and tag == _T_ROW:
                repeat = _count(el.get(_ROWS_REPEATED))
                texts = _row(el)
                _drop(el)
                if texts is None:
                    number += repeat
                    continue
                for _ in range(min(repeat, 1_048_576)):
                    number += 1
                    yield number, list(texts), None
            elif not inside and tag == _T_ROW:
                _drop(el)
        if self.wanted is None and names:  # every sheet hidden: the first, as for XLSX
            self.wanted = 0
            self._content.close()
            self._content = self._zip.open("content.xml")
            yield from self.rows()
            return
        self._missing(names)

    def _chosen(self, name: str, index: int, hidden: bool) -> bool:
        wanted = self.wanted
        if isinstance(wanted, int):
            return index == wanted
        if wanted is not None:
            return name == wanted
        return not hidden

    def _missing(self, names: list[str]) -> None:
        shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
        wanted = self.wanted
        if isinstance(wanted, int):
            raise FeedError(f"mapping.sheet {wanted}: the workbook has {len(names)} "
                            f"sheet(s) ({shown}); the index counts from 0")
        if wanted is not None:
            raise FeedError(f"the workbook has no sheet {wanted!r} (sheets: {shown})")
        raise FeedError("the workbook has no sheets")

    def close(self) -> None:
        self._content.close()
        self._zip.close()


def _row(el: Any) -> list[str] | None:
    """A row's texts, None when it has none."""
    texts: list[str] = []
    column = 0
    for cell in el:
        get = cell.get
        repeated = get(_COLUMNS_REPEATED)
        repeat = int(repeated) if repeated and repeated.isdigit() else 1
        kind = get(_VALUE_TYPE)
        if kind is None:  # empty, or not a cell
            if cell.tag in _T_CELLS:
                column += repeat
            continue
        if kind == "float":  # the common cells first: a whole number, one paragraph
            value = get(_VALUE) or ""
            text = (value if value.isdigit() and len(value) < 16 and value[0] != "0"
                    else _text(cell))
        elif kind == "string" and len(cell) == 1 and not len(cell[0]) and cell[0].tag == _P:
            text = get(_STRING) or cell[0].text or ""
        else:
            text = _text(cell)
        if text:
            if column >= MAX_COLUMNS:
                break
            if len(texts) < column:
                texts.extend([""] * (column - len(texts)))
            texts.extend([text] * min(repeat, MAX_COLUMNS - column))
        column += repeat
    return texts or None


def _text(cell: Any) -> str:
    kind = cell.get(_VALUE_TYPE)
    if kind is None:
        return ""
    if kind in _NUMBERS:
        value = cell.get(_VALUE)
        try:
            return number_text(float(value)) if value is not None else ""
        except ValueError:
            return ""
    if kind == "date":
        return _date(cell.get(_DATE) or "")
    if kind == "time":
        return _duration(cell.get(_TIME) or "")
    if kind == "boolean":
        return "TRUE" if cell.get(_BOOLEAN) in ("true", "1") else "FALSE"
    given = cell.get(_STRING)
    if given is not None:
        return str(given)
    # the cell's own paragraphs (an annotation's are not its value)
    return "\n".join(_paragraph(p) for p in cell if p.tag == _P)


def _paragraph(p: Any) -> str:
    out = [p.text or ""]
    for child in p:
        tag = child.tag
        if tag == _S:
            out.append(" " * _count(child.get(_C)))
        elif tag == _TAB:
            out.append("\t")
        elif tag == _BREAK:
            out.append("\n")
        elif tag != _P:
            out.append(_paragraph(child))
        out.append(child.tail or "")
    return "".join(out)


def _date(value: str) -> str:
    try:
        if "T" in value:
            return cell_text(datetime.datetime.fromisoformat(value))
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        return value


def _duration(value: str) -> str:
    """A time cell as calamine gives it: a time of day (`10:15:00`) under 24 hours, else
    its ISO text as written (`PT36H00M00S`)."""
    m = _DURATION.fullmatch(value)
    if m is None or value.startswith("-"):
        return value
    days, hours, minutes, seconds = m.groups()
    total = (int(days or 0) * 86_400 + int(hours or 0) * 3_600 + int(minutes or 0) * 60
             + float(seconds or 0))
    if total >= 86_400:
        return value
    whole = int(total)
    return cell_text(datetime.time(whole // 3600, whole // 60 % 60, whole % 60,
                                   round((total - whole) * 1e6)))


def _drop(el: Any) -> None:
    """Lets go of an element read, and of what came before it."""
    el.clear()
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 1
