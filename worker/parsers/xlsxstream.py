"""An XLSX (or XLSM) sheet read as a stream of rows, in flat memory: its zip member
inflated as it is read, in chunks of whole rows, each chunk's rows given and dropped; the
shared strings in a temporary file (worker/parsers/xlsxparts.py); cells typed as
python-calamine typed them (worker/parsers/xlsxcells.py). An error cell (`#N/A`,
`#DIV/0!`) reads as empty text, and is named in its row's error cells (its column and its
value) so that the pipeline can reject a row whose mapped column holds one.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
from array import array
from collections.abc import Iterator
from typing import IO

from lxml import etree

from worker.errors import FeedError
from worker.gcpause import gc_paused
from worker.parsers.xlsxcells import (
    COLUMNS,
    ERROR,
    INLINE,
    NUMBER,
    SHARED,
    Cells,
    Row,
    column_of,
    inline,
    number,
    place,
)
from worker.parsers.xlsxparts import (
    Prefixed,
    SharedStrings,
    SheetPart,
    cell_ref,
    merged_ranges,
    read_workbook,
    style_kinds,
    wrapped,
    xml_chunks,
)

Merge = tuple[tuple[int, int], tuple[int, int]]
CHUNK_BYTES = 1 << 16  # of the sheet's XML at a time: see rows()

# a cell as Excel writes it: letters, row, attributes, "<v>" and value, "<is>" and content
_CELL = re.compile(r'<c r="([A-Z]{1,3})(\d+)"([^>]*)>\s*(?:<f\b[^>]*?(?:/>|>[^<]*</f>)\s*)?'
                   r'(?:(<v>[^<]*)</v>|(<is>.*?)</is>)?', re.S)
_TYPE = re.compile(r'\bt="(\w+)"')
_STYLE = re.compile(r'\bs="(\d+)"')
_DIMENSION = re.compile(rb'<dimension\b[^>]*?\bref="([^"]+)"')
_MERGE = re.compile(rb"<(?:\w+:)?mergeCell\b[^>]*?\bref=\"([^\"]+)\"")


class Unreadable(FeedError):
    """The file is no workbook the reader can open (corrupt, or cut short)."""


class SheetStream:
    """One sheet of an XLSX file on disk, its rows read as they come (`rows()`, once).

    The sheet's part is cut into chunks of whole rows as it is inflated; a chunk's cells
    are found by a regular expression where they are written as Excel and the usual
    libraries write them (`<c r="B2" s="1" t="s"><v>7</v></c>`, a formula's `<f>` before
    its value), else (another shape, a prefix, a cell without its reference) the chunk is
    parsed by lxml: the expression's cells are checked against the chunk's count of cells
    and values before they are taken."""

    def __init__(self, path: str, sheet: str | int | None) -> None:
        self._zip = zipfile.ZipFile(path)  # closed by close()
        self._strings: SharedStrings | None = None
        self._part: IO[bytes] | None = None
        try:
            self._open(sheet)
        except BaseException:
            self.close()
            raise

    def _open(self, wanted: str | int | None) -> None:
        z = self._zip
        try:
            workbook = read_workbook(z)
        except (KeyError, etree.XMLSyntaxError) as exc:
            raise Unreadable(f"the XLSX file cannot be read: its workbook part is "
                             f"unreadable ({exc})") from None
        sheets = workbook.sheets
        part = sheets[choose_sheet([s.name for s in sheets],
                                   [s.name for s in sheets if s.visible and s.worksheet],
                                   wanted)]
        if part.part is None:
            raise Unreadable(f"the XLSX file cannot be read: sheet {part.name!r} has no "
                             "worksheet part")
        self.sheet: SheetPart = part
        self.name = part.name
        self._ns = workbook.ns
        try:
            dates = {str(i): k for i, k in enumerate(style_kinds(z, workbook)) if k}
            self._strings = SharedStrings.read(z, workbook)
            self._cells = Cells(workbook.ns, dates, workbook.date1904, self._strings)
        except (KeyError, ValueError, etree.XMLSyntaxError, zipfile.BadZipFile,
                OSError, EOFError) as exc:
            raise Unreadable(f"the XLSX file cannot be read: {exc}") from None
        self._kinds: dict[str, int] = {}
        self._pending: list[Row] = []
        self._head = b""
        # the sheet's extent, as its <dimension> declares it (before its rows)
        self.first_column, self.width = 0, 0
        with self._guard():
            self._part = z.open(part.part)
            self._chunks = xml_chunks(self._part, b"sheetData", b"row", CHUNK_BYTES)
            try:
                self._head, first = next(self._chunks)
            except StopIteration:
                return
            except Prefixed:
                self._chunks = self._parsed()
                self._head, first = b"", b""
        found = _DIMENSION.search(self._head)
        if found is not None:
            with contextlib.suppress(ValueError):
                first_ref, _, last_ref = found.group(1).decode().partition(":")
                self.first_column = cell_ref(first_ref)[1]
                self.width = cell_ref(last_ref or first_ref)[1] + 1
        with self._guard(), gc_paused():
            self._pending = self._chunk(first) if first else []

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (etree.XMLSyntaxError, zipfile.BadZipFile, OSError, EOFError,
                ValueError) as exc:
            raise Unreadable(f"the XLSX file cannot be read: sheet {self.name!r}: "
                             f"{exc}") from None

    def rows(self) -> Iterator[Row]:
        """The sheet's rows that hold cells, with their numbers (1 is the first), read a
        chunk (CHUNK_BYTES of XML) at a time. After each chunk the shared strings' pages
        its rows touched are let go of: the kernel maps pages around each one read, so a
        text looked up far back costs up to 64 KiB of resident memory until then."""
        while True:
            if self._pending:
                pending, self._pending = self._pending, []
                yield from pending
            with self._guard(), gc_paused():  # a chunk's cells: many tuples, no cycles
                got = next(self._chunks, None)
                if got is None:
                    break
                self._pending.extend(self._chunk(got[1]))
            if self._strings is not None:
                self._strings.release()
        pending, self._pending = self._pending, []
        yield from pending

    def _chunk(self, chunk: bytes) -> list[Row]:
        """A chunk's rows: by the expression, else parsed (see the class doc)."""
        if not chunk:
            return []
        text = chunk.decode()
        cells = _CELL.findall(text)
        if len(cells) == text.count("<c"):
            rows, values = self._found(cells)
            if values == text.count("</v>") + text.count("</is>"):
                return rows
        close = b"</sheetData></" + _root_name(self._head) + b">"
        row_tag = f"{{{self._ns}}}row"
        out: list[Row] = []
        number = 0
        for el in wrapped(self._head, chunk, close).iter(row_tag):
            row = self._cells.row(el, number)
            number = row[0]
            out.append(row)
        return out

    def _found(self, cells: list[tuple[str, str, str, str, str]]) -> tuple[list[Row], int]:
        """Rows of the cells the expression found: (letters, row, attributes, `<v>` and
        its text, `<is>` and its content); with the count of values seen."""
        rows: list[Row] = []
        kinds, columns, strings, typed = self._kinds, COLUMNS, self._strings, self._cells
        data, offsets = strings.table() if strings is not None else (None, array("q"))
        current = ""
        texts: list[str] = []
        errors: list[tuple[int, str]] | None = None
        values = 0
        for letters, at, attrs, v, content in cells:
            if at != current:
                if texts:
                    rows.append((int(current), texts, errors))
                current, texts, errors = at, [], None
            column = columns.get(letters, -1)
            if column < 0:
                column = column_of(letters)
            kind = kinds.get(attrs, -1)
            if kind < 0:
                t, st = _TYPE.search(attrs), _STYLE.search(attrs)
                kind = kinds[attrs] = typed.kind(t and t.group(1), st and st.group(1))
            if v:
                values += 1
                v = v[3:]
                if kind == NUMBER:
                    text = v if v.isdigit() and len(v) < 16 and v[0] != "0" else number(v)
                elif kind == SHARED:
                    try:
                        text = data[offsets[int(v)]:offsets[int(v) + 1]].decode()  # type: ignore[index]
                    except (ValueError, IndexError, TypeError):  # no such string: empty
                        text = ""
                else:
                    text = typed.value(kind, v)
                    if kind == ERROR:
                        errors = [*(errors or ()), (column, v)]
            elif content:
                values += 1
                text = inline(content[4:]) if kind == INLINE else ""
            else:
                text = ""
            if column == len(texts):
                texts.append(text)
            else:
                place(texts, column, text)
        if texts:
            rows.append((int(current), texts, errors))
        return rows, values

    def _parsed(self) -> Iterator[tuple[bytes, bytes]]:
        """The rows of a part written with prefixes, parsed by lxml as they come: each
        row given as the chunk of a single row (already read into self._pending)."""
        part = self.sheet.part
        if part is None:  # pragma: no cover - _open checked it
            return
        ns = self._ns
        row_tag = f"{{{ns}}}row"
        number = 0
        with self._zip.open(part) as raw:
            for _, el in etree.iterparse(raw, events=("end",), tag=row_tag,
                                         resolve_entities=False, no_network=True,
                                         load_dtd=False, huge_tree=True):
                row = self._cells.row(el, number)
                number = row[0]
                el.clear()
                while el.getprevious() is not None:
                    del el.getparent()[0]
                self._pending.append(row)
                if len(self._pending) >= 1024:
                    yield b"", b""
        yield b"", b""

    def merges(self) -> list[Merge]:
        """The sheet's merged cells (listed after its rows: the part is read through once
        more, its bytes searched without parsing them)."""
        part = self.sheet.part
        if part is None:
            return []
        refs: list[str] = []
        tail = b""
        try:
            with self._zip.open(part) as raw:
                while chunk := raw.read(1 << 20):
                    data = tail + chunk
                    if b"mergeCell" in data:
                        refs.extend(m.decode() for m in _MERGE.findall(data))
                        last = data.rfind(b"<")
                        tail = data[last:] if last >= 0 and b">" not in data[last:] else b""
                    else:
                        tail = data[-64:]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise Unreadable(f"the XLSX file cannot be read: sheet {self.name!r}: "
                             f"{exc}") from None
        return merged_ranges(iter(dict.fromkeys(refs)))

    def close(self) -> None:
        chunks = getattr(self, "_chunks", None)
        if chunks is not None:
            chunks.close()
        if self._part is not None:
            self._part.close()
            self._part = None
        if self._strings is not None:
            self._strings.close()
            self._strings = None
        self._zip.close()


def _root_name(head: bytes) -> bytes:
    found = re.match(rb"<([\w:.-]+)", head)
    return found.group(1) if found is not None else b"worksheet"


def choose_sheet(names: list[str], visible: list[str], wanted: str | int | None) -> int:
    """The index of the sheet `mapping.sheet` names (a name, or a 0-based index), else of
    the first visible worksheet."""
    if isinstance(wanted, int):
        if wanted >= len(names):
            raise FeedError(f"mapping.sheet {wanted}: the workbook has {len(names)} "
                            f"sheet(s) ({_shown(names)}); the index counts from 0")
        return wanted
    if wanted is not None:
        if wanted not in names:
            raise FeedError(f"the workbook has no sheet {wanted!r} (sheets: "
                            f"{_shown(names)})")
        return names.index(wanted)
    if not names:
        raise FeedError("the workbook has no sheets")
    return names.index(visible[0]) if visible else 0


def _shown(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (", ..." if len(names) > 20 else "")
