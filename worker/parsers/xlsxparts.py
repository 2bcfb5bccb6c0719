"""The parts of an XLSX workbook around its cells, for the streaming reader
(worker/parsers/xlsxstream.py): its sheets and where they are (xl/workbook.xml and its
relationships), which cell styles show numbers as dates (xl/styles.xml, by calamine's
rules), and the shared strings (xl/sharedStrings.xml).

The shared-strings table can be as large as the sheet (a million distinct names and
descriptions): it is streamed into temporary files, the texts and where each starts, and
read back through mmap, so that memory does not grow with it.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import mmap
import posixpath
import re
import tempfile
import zipfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from lxml import etree

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
STRICT = "http://purl.oclc.org/ooxml/spreadsheetml/main"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_R_IDS = ("{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id",
          "{http://purl.oclc.org/ooxml/officeDocument/relationships}id")
WORKBOOK = "xl/workbook.xml"
_SIMPLE_SI = re.compile(rb'<si><t(?: xml:space="preserve")?>([^<]*)</t></si>')

# What a cell style shows a number as (calamine's rules, so that an XLSX reads as before)
OTHER, DATETIME, DURATION = 0, 1, 2
_BUILTIN_DATES = {**dict.fromkeys((*range(14, 23), 45, 47), DATETIME), 46: DURATION}


@dataclass(frozen=True)
class SheetPart:
    """A sheet as the workbook lists it."""

    name: str
    part: str | None  # its zip member
    visible: bool
    worksheet: bool  # not a chart sheet


@dataclass(frozen=True)
class Workbook:
    """What the streaming reader needs of a workbook besides a sheet's cells."""

    ns: str  # the SpreadsheetML namespace (transitional, or strict)
    sheets: list[SheetPart]
    date1904: bool
    strings: str | None  # the shared strings' zip member
    styles: str | None


def _parse(z: zipfile.ZipFile, name: str) -> Any:
    with z.open(name) as part:
        return etree.parse(part, etree.XMLParser(resolve_entities=False, no_network=True,
                                                 load_dtd=False)).getroot()


def _targets(z: zipfile.ZipFile, base: str) -> dict[str, tuple[str, str]]:
    """A part's relationships: id -> (type, zip member)."""
    folder, name = posixpath.split(base)
    rels = posixpath.join(folder, "_rels", name + ".rels")
    if rels not in z.NameToInfo:
        return {}
    out = {}
    for rel in _parse(z, rels).iter(f"{{{_RELS}}}Relationship"):
        target = rel.get("Target") or ""
        if rel.get("TargetMode") == "External":
            continue
        member = (target.lstrip("/") if target.startswith("/")
                  else posixpath.normpath(posixpath.join(folder, target)))
        out[rel.get("Id") or ""] = (rel.get("Type") or "", member)
    return out


def read_workbook(z: zipfile.ZipFile) -> Workbook:
    root = _parse(z, WORKBOOK)
    ns = STRICT if root.tag == f"{{{STRICT}}}workbook" else MAIN
    rels = _targets(z, WORKBOOK)
    sheets = []
    for sheet in root.iter(f"{{{ns}}}sheet"):
        rid = next((sheet.get(a) for a in _R_IDS if sheet.get(a)), "")
        kind, member = rels.get(rid or "", ("", ""))
        sheets.append(SheetPart(sheet.get("name") or "", member if member in z.NameToInfo
                                else None, sheet.get("state", "visible") == "visible",
                                kind.endswith("/worksheet")))
    pr = root.find(f"{{{ns}}}workbookPr")
    date1904 = pr is not None and pr.get("date1904", "0").lower() in ("1", "true")
    by_type = {kind.rsplit("/", 1)[-1]: member for kind, member in rels.values()}
    strings = by_type.get("sharedStrings")
    styles = by_type.get("styles")
    return Workbook(ns, sheets, date1904,
                    strings if strings in z.NameToInfo else None,
                    styles if styles in z.NameToInfo else None)


def style_kinds(z: zipfile.ZipFile, workbook: Workbook) -> list[int]:
    """Each cell style's (cellXfs entry's) number kind: OTHER, DATETIME or DURATION."""
    if workbook.styles is None:
        return []
    ns = workbook.ns
    root = _parse(z, workbook.styles)
    custom = {el.get("numFmtId"): number_format_kind(el.get("formatCode") or "")
              for el in root.iter(f"{{{ns}}}numFmt")}
    xfs = root.find(f"{{{ns}}}cellXfs")
    if xfs is None:
        return []
    kinds = []
    for xf in xfs.iter(f"{{{ns}}}xf"):
        fid = xf.get("numFmtId") or "0"
        kind = custom.get(fid)
        if kind is None:
            kind = _BUILTIN_DATES.get(int(fid), OTHER) if fid.isdigit() else OTHER
        kinds.append(kind)
    return kinds


def number_format_kind(code: str) -> int:
    """Whether a number format shows a date or time (DATETIME), an elapsed time ([h]:mm:
    DURATION), or a number (OTHER): its first section, outside quotes, escapes and
    brackets, holding d, m, y, h or s (or AM/PM)."""
    escaped = quoted = ampm = hms = False
    brackets = 0
    prev = " "
    for ch in code:
        if escaped:
            escaped = False
        elif ch in "_\\*":  # the next character is a literal
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == ";":
            return OTHER  # the first section only
        elif ch == "[":
            brackets += 1
        elif ch == "]" and brackets == 1 and hms:
            return DURATION
        elif ch == "]":
            brackets = max(0, brackets - 1)
        elif brackets == 0 and not ampm and ch in "aA":
            ampm = True
        elif brackets == 0 and ch in ("pmPM/" if ampm else "dmhysDMHYS"):
            return DATETIME
        elif not (hms and ch.lower() == prev.lower()):
            hms = prev == "[" and ch in "mhsMHS"
        prev = ch
    return OTHER


class SharedStrings:
    """The shared-strings table, in temporary files: the texts one after the other, and
    where each starts (8 bytes a text), both read back through mmap; `table[i]` is the
    i-th text. Pages read are let go of as the sheet is read (`release`), so that memory
    stays flat however large the table."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="feed-", suffix=".strings")  # noqa: SIM115
        self._starts: IO[bytes] = tempfile.TemporaryFile(prefix="feed-", suffix=".starts")  # noqa: SIM115
        self._pending = array("q", [0])  # offsets not yet written
        self._at = 0  # bytes of texts written
        self._map: mmap.mmap | None = None
        self._starts_map: mmap.mmap | None = None
        self._index: memoryview | None = None

    @classmethod
    def read(cls, z: zipfile.ZipFile, workbook: Workbook) -> SharedStrings:
        table = cls()
        if workbook.strings is None:
            return table
        try:
            try:
                with z.open(workbook.strings) as part:
                    table._fill(part, workbook.ns)
            except Prefixed:
                table._truncate()
                with z.open(workbook.strings) as part:
                    table._fill_parsed(part, workbook.ns)
            table._done()
        except BaseException:
            table.close()
            raise
        return table

    def _fill(self, part: IO[bytes], ns: str) -> None:
        t, r = f"{{{ns}}}t", f"{{{ns}}}r"
        for head, chunk in xml_chunks(part, b"sst", b"si", 1 << 20):
            items = _SIMPLE_SI.findall(chunk)
            if len(items) != chunk.count(b"<si"):  # rich text, or written otherwise
                items = [_si_text(el, t, r).encode() for el in wrapped(head, chunk, b"</sst>")]
            elif b"&" in chunk:
                items = [html.unescape(i.decode()).encode() if b"&" in i else i
                         for i in items]
            self._add(items)

    def _fill_parsed(self, part: IO[bytes], ns: str) -> None:
        """The table of a part written with prefixes, parsed as it comes."""
        t, r = f"{{{ns}}}t", f"{{{ns}}}r"
        items: list[bytes] = []
        for _, el in etree.iterparse(part, events=("end",), tag=f"{{{ns}}}si",
                                     resolve_entities=False, no_network=True,
                                     load_dtd=False, huge_tree=True):
            items.append(_si_text(el, t, r).encode())
            el.clear()
            while el.getprevious() is not None:
                del el.getparent()[0]
            if len(items) >= 4096:
                self._add(items)
                items = []
        self._add(items)

    def _add(self, items: list[bytes]) -> None:
        if not items:
            return
        pending = self._pending
        self._file.write(b"".join(items))
        pending.extend(itertools.islice(
            itertools.accumulate(map(len, items), initial=self._at), 1, None))
        self._at = pending[-1]
        if len(pending) >= 1 << 16:
            self._starts.write(pending.tobytes())
            del pending[:]

    def _done(self) -> None:
        self._starts.write(self._pending.tobytes())
        del self._pending[:]
        self._file.flush()
        self._starts.flush()
        if self._at:
            self._map = mmap.mmap(self._file.fileno(), self._at, access=mmap.ACCESS_READ)
            self._starts_map = mmap.mmap(self._starts.fileno(), 0, access=mmap.ACCESS_READ)
            self._index = memoryview(self._starts_map).cast("q")

    def _truncate(self) -> None:
        for file in (self._file, self._starts):
            file.seek(0)
            file.truncate()
        self._pending = array("q", [0])
        self._at = 0

    def __len__(self) -> int:
        return len(self._index) - 1 if self._index is not None else 0

    def table(self) -> tuple[mmap.mmap | None, memoryview | array[int]]:
        """The texts' bytes and where each starts (the i-th text is bytes[starts[i]:
        starts[i + 1]]), for a reader that looks many up."""
        return self._map, self._index if self._index is not None else array("q")

    def release(self) -> None:
        """Lets go of the pages read so far (they stay in the page cache)."""
        for mapped in (self._map, self._starts_map):
            if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
                mapped.madvise(mmap.MADV_DONTNEED)

    def __getitem__(self, index: int) -> str:
        starts, data = self._index, self._map
        if data is None or starts is None or not 0 <= index < len(starts) - 1:
            return ""  # an index past the table: an empty cell, as calamine reads it
        return data[starts[index]:starts[index + 1]].decode()

    def close(self) -> None:
        if self._index is not None:
            self._index.release()
            self._index = None
        for mapped in (self._map, self._starts_map):
            if mapped is not None:
                with contextlib.suppress(BufferError):
                    mapped.close()
        self._map = self._starts_map = None
        for file in (self._file, self._starts):
            with contextlib.suppress(OSError):
                file.close()


class Prefixed(LookupError):
    """A part whose elements are written with a prefix (`<x:row>`): parsed, not searched."""


def xml_chunks(part: IO[bytes], root: bytes, item: bytes,
               size: int = 1 << 22) -> Iterator[tuple[bytes, bytes]]:
    """A large part's items in chunks of whole items (`<si>...</si>`, `<row>...</row>`),
    cut from its bytes as they are inflated, each with what comes before the items from
    the document element's start tag (its namespace declarations, to parse a chunk alone).
    Raises Prefixed when the part has no unprefixed `root` element, ValueError when it
    ends before that element's end."""
    end = b"</" + item + b">"
    data = b""
    while True:
        piece = part.read(size)
        data += piece
        found = re.search(rb"<" + root + rb"\b[^>]*>", data)
        if found is not None:
            break
        if not piece or len(data) > size * 4:
            raise Prefixed(root.decode())
    top = re.search(rb"<[A-Za-z_]", data)
    head = data[top.start() if top is not None else 0:found.end()]
    data = data[found.end():]
    if head.endswith(b"/>"):
        return  # <sheetData/>: none
    while True:
        piece = part.read(size)
        data += piece
        cut = data.rfind(end)
        if cut >= 0:
            cut += len(end)
            chunk, data = data[:cut], data[cut:]
            yield head, chunk
        if not piece:
            if b"</" + root not in data and b":" + root not in data:
                raise ValueError(f"the part ends inside its <{root.decode()}> element")
            return


def wrapped(head: bytes, chunk: bytes, close: bytes) -> Any:
    """A chunk's items as elements: the chunk parsed after `head`, closed by `close`."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=True)
    return etree.fromstring(head + chunk + close, parser)


def _si_text(el: Any, t: str, r: str) -> str:
    """A string item's text: its `t`, or its runs' (phonetic readings left out)."""
    parts: list[str] = []
    for child in el:
        if child.tag == t:
            parts.append(child.text or "")
        elif child.tag == r:
            parts.extend(x.text or "" for x in child.iter(t))
    return parts[0] if len(parts) == 1 else "".join(parts)


def cell_ref(ref: str) -> tuple[int, int]:
    """`B3` as (row, column), counted from 0."""
    letters = ref.rstrip("0123456789")
    return int(ref[len(letters):]) - 1, column_index(letters)


def column_index(letters: str) -> int:
    """`A` 0, `Z` 25, `AA` 26."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def merged_ranges(refs: Iterator[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """`A1:F1` refs as calamine gives merged ranges: ((row, column), (row, column))."""
    out = []
    for ref in refs:
        first, _, last = ref.partition(":")
        with contextlib.suppress(ValueError):
            out.append((cell_ref(first), cell_ref(last or first)))
    return out
