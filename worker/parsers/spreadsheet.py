"""Spreadsheet feeds: XLSX, XLSM, XLSB, XLS and ODS, read with python-calamine.

A spreadsheet cannot be read from a stream (a zip's directory is at its end; an XLS is a
file system of its own), so the download is written to a temporary file (in TMPDIR; as
large as FEED_WORKER_MAX_FILE_BYTES allows) and read once it is whole: `close()` opens it
and reads the header row, `rest()` then gives the rows in batches, each cell as the text a
CSV export would hold (worker/parsers/cells.py), so that they are mapped exactly as a CSV
feed's rows are. Positions are the sheet's row numbers; empty rows are skipped.

The sheet: `mapping.sheet` by name or 0-based index, else the first visible one. The
header: `mapping.headerRow` (the sheet's row number), else the first row that is not a
title (a single cell, in a sheet of several columns). A header cell merged down from a row
above takes that row's text, and one merged across several columns names each of them
(the second `Stock 2`, and so on); an ODS file's merged cells, which calamine does not
report, are read from its first HEAD_ROWS rows (worker/parsers/odsmerges.py).

calamine holds the sheet's cells in memory while it is read (about ten times the size of
an XLSX file); the rows it hands over go on in batches, as a CSV's do.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import weakref
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from worker.errors import FeedError, SourceError
from worker.model import DEFAULT_MAX_FIELD_CHARS
from worker.parsers import CutShort, RecordBatch, field_cap_reason
from worker.parsers.cells import row_texts
from worker.parsers.odsmerges import ods_merges
from worker.parsers.sniff import OLE2_MAGIC, ZIP_MAGIC

BATCH_ROWS = 2048
# Below this much declared, the ratio is not judged (as for gzip and zip feeds).
RATIO_FLOOR_BYTES = 16 * 1024 * 1024
HEAD_ROWS = 100  # an ODS's merged cells are read in its first rows only (the header's)
_ZIP_KINDS = (("xl/workbook.bin", "xlsb"), ("xl/workbook.xml", "xlsx"),
              ("content.xml", "ods"))
FORMATS = "XLSX, XLSM, XLSB, XLS or ODS"
FORMAT_NAMES = ("xlsx", "xlsb", "xls", "ods")  # details.format, as read


@dataclass(frozen=True)
class ZipLimits:
    """How far an XLSX's or ODS's parts may inflate, as its zip directory declares them
    (FEED_WORKER_MAX_DECOMPRESSED_BYTES, FEED_WORKER_MAX_INFLATION_RATIO): the reader
    inflates them in memory, so a zip bomb is refused before it is opened."""

    max_bytes: int
    max_ratio: int | None = None

    def check(self, inflated: int, packed: int) -> None:
        if inflated > self.max_bytes:
            raise SourceError(f"the spreadsheet's parts inflate to {inflated:,} bytes, past "
                              f"{self.max_bytes:,} (FEED_WORKER_MAX_DECOMPRESSED_BYTES)")
        ratio = self.max_ratio
        if ratio is not None and inflated > RATIO_FLOOR_BYTES and inflated > ratio * packed:
            raise SourceError(f"the spreadsheet's parts inflate more than {ratio} times: "
                              f"{packed:,} bytes to {inflated:,} bytes "
                              "(FEED_WORKER_MAX_INFLATION_RATIO)")


class Unreadable(FeedError):
    """The file is no workbook the reader can open (corrupt, or cut short)."""


class SpreadsheetRecords:
    """Bytes in (spooled to a temporary file), then the sheet's rows as records."""

    delimiter = ","  # between the cells of a rejected row's raw text

    def __init__(self, sheet: str | int | None = None, header_row: int | None = None,
                 has_header: bool = True,
                 max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
                 limits: ZipLimits | None = None) -> None:
        self.sheet = sheet
        self.limits = limits
        self.header_row = header_row
        self.has_header = has_header
        self.max_field_chars = max_field_chars
        self.header: list[str] | None = None
        self.details: dict[str, Any] = {}
        self._file: IO[bytes] | None = None
        self._closer: weakref.finalize[Any, Any] | None = None
        self._size = 0
        self._rows: Iterator[tuple[int, list[Any]]] | None = None
        self._width = 0
        self._pad = 0  # empty columns left of the sheet's data

    def feed(self, data: bytes) -> RecordBatch:
        if self._file is None:
            self._file = tempfile.NamedTemporaryFile(prefix="feed-", suffix=".sheet")  # noqa: SIM115
            # closed (and so deleted) when the run drops these records, whatever it failed at
            self._closer = weakref.finalize(self, _close, self._file)
        self._file.write(data)
        self._size += len(data)
        return RecordBatch()

    def close(self, vouched: bool = True) -> RecordBatch:
        """Opens the whole file and reads up to its header row (no records yet: `rest`)."""
        if self._file is None or self._size == 0:
            return RecordBatch()
        self._file.flush()
        self._file.seek(0)
        head = self._file.read(8)
        kind = _kind(head)
        if kind is None:
            self._drop()
            raise FeedError(f"the file is not a spreadsheet ({FORMATS}): it starts with "
                            f"{head!r}")
        try:
            self._open(kind)
        except Unreadable:
            if not vouched and kind != "xls":
                raise CutShort("the spreadsheet ends before its zip directory") from None
            raise
        return RecordBatch()

    def rest(self) -> Iterator[RecordBatch]:
        """The rows after the header, BATCH_ROWS at a time."""
        rows = self._rows
        if rows is None:
            return
        cap, width, pad = self.max_field_chars, self._width, [""] * self._pad
        texts_of, out, lines = row_texts, [], []
        errors: list[tuple[int, str, str]] = []
        try:
            for number, cells in rows:
                texts = texts_of(cells)
                if not any(texts):
                    continue  # an empty row
                if pad:
                    texts = pad + texts
                longest = max(map(len, texts))
                if longest > cap:
                    column = [len(t) for t in texts].index(longest)
                    errors.append((number, ",".join(texts), field_cap_reason(
                        f"column {letters(column)}", longest, cap)))
                    continue
                if len(texts) < width:
                    texts += [""] * (width - len(texts))
                out.append(texts)
                lines.append(number)
                if len(out) >= BATCH_ROWS:
                    yield RecordBatch(out, lines, errors)
                    out, lines, errors = [], [], []
            if out or errors:
                yield RecordBatch(out, lines, errors)
        finally:
            self._rows = None

    def _open(self, kind: str) -> None:
        from python_calamine import CalamineError, CalamineWorkbook

        if self._file is None:  # pragma: no cover - close() checked it
            raise RuntimeError("no file to open")
        path = self._file.name
        try:
            if kind == "office-zip":
                kind = _zip_kind(path, self.limits)
        except FeedError:
            self._drop()
            raise
        # calamine knows a file's format by its name: give it the one it has
        named = f"{path}.{kind}"
        os.link(path, named)
        try:
            workbook = CalamineWorkbook.from_path(named)
            sheet = self._sheet(workbook)
            merged = sheet.merged_cell_ranges or []
            if kind == "ods" and self.has_header:  # calamine has none of an ODS's
                merged = ods_merges(named, sheet.name, self.header_row or HEAD_ROWS)
            start = sheet.start or (0, 0)
            rows = enumerate(sheet.iter_rows(), start=start[0] + 1)
        except CalamineError as exc:
            raise Unreadable(f"the {kind.upper()} file cannot be read: {exc}") from None
        except BaseException as exc:
            # a Rust panic inside the reader (on a malformed file) is a BaseException
            if type(exc).__name__ != "PanicException":
                raise
            raise Unreadable(f"the {kind.upper()} file cannot be read: the reader "
                             f"failed on it ({exc})") from None
        finally:
            os.unlink(named)
            self._drop()
        self.details.update(format=kind, sheet=sheet.name)
        self._pad = start[1]
        self._width = start[1] + sheet.width
        self._rows = rows
        if self.has_header:
            self.header = self._header(rows, merged)  # None: the sheet is empty

    def _sheet(self, workbook: Any) -> Any:
        names: list[str] = workbook.sheet_names
        wanted = self.sheet
        if isinstance(wanted, int):
            if wanted >= len(names):
                raise FeedError(f"mapping.sheet {wanted}: the workbook has {len(names)} "
                                f"sheet(s) ({_shown(names)}); the index counts from 0")
            return workbook.get_sheet_by_index(wanted)
        if wanted is not None:
            if wanted not in names:
                raise FeedError(f"the workbook has no sheet {wanted!r} (sheets: "
                                f"{_shown(names)})")
            return workbook.get_sheet_by_name(wanted)
        from python_calamine import SheetTypeEnum, SheetVisibleEnum

        visible = [m.name for m in workbook.sheets_metadata
                   if m.visible == SheetVisibleEnum.Visible and m.typ == SheetTypeEnum.WorkSheet]
        if not names:
            raise FeedError("the workbook has no sheets")
        return workbook.get_sheet_by_name(visible[0] if visible else names[0])

    def _header(self, rows: Iterator[tuple[int, list[Any]]],
                merged: list[tuple[tuple[int, int], tuple[int, int]]]) -> list[str] | None:
        """Reads up to the header row: `mapping.headerRow`, else the first row that is
        neither empty nor a title (a single cell, in a sheet of several columns)."""
        above: dict[int, list[str]] = {}
        wide = self._width - self._pad > 1
        for number, cells in rows:
            texts = [""] * self._pad + row_texts(cells)
            if self.header_row is not None:
                if number < self.header_row:
                    above[number] = texts
                    continue
                if number > self.header_row:
                    raise FeedError(f"mapping.headerRow {self.header_row}: that row is empty "
                                    f"(the sheet's first row with cells is {number})")
            elif sum(1 for t in texts if t) <= (1 if wide else 0):  # empty, or a title
                above[number] = texts
                continue
            return _merged_names(number, texts, above, merged)
        if self.header_row is not None:
            raise FeedError(f"mapping.headerRow {self.header_row}: the sheet has no such row")
        return None

    def _drop(self) -> None:
        if self._closer is not None:
            self._closer()


def _close(file: IO[bytes]) -> None:
    """Closes a temporary file, which deletes it."""
    with contextlib.suppress(OSError):
        file.close()


def _merged_names(number: int, texts: list[str], above: dict[int, list[str]],
                  merged: list[tuple[tuple[int, int], tuple[int, int]]]) -> list[str]:
    """The header row's names with its merged cells filled in (see the module doc)."""
    names = list(texts)
    row = number - 1  # calamine's merged ranges count rows and columns from 0
    for (r0, c0), (r1, c1) in merged:
        if not r0 <= row <= r1 or c0 >= len(names):
            continue
        source = names if r0 == row else above.get(r0 + 1, [])
        name = source[c0] if c0 < len(source) else ""
        if not name:
            continue
        names[c0] = name
        for k, column in enumerate(range(c0 + 1, min(c1 + 1, len(names))), start=2):
            names[column] = f"{name} {k}"
    return names


def _kind(head: bytes) -> str | None:
    if head.startswith(OLE2_MAGIC):
        return "xls"
    if head.startswith(ZIP_MAGIC):
        return "office-zip"
    return None


def _zip_kind(path: str, limits: ZipLimits | None) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise Unreadable(f"the spreadsheet is not a readable zip: {exc}") from None
    if limits is not None:
        limits.check(sum(i.file_size for i in infos), os.path.getsize(path))
    names = {i.filename for i in infos}
    for part, kind in _ZIP_KINDS:
        if part in names:
            return kind
    raise FeedError(f"the zip holds no spreadsheet ({FORMATS})")


def letters(column: int) -> str:
    """A 0-based column index as a spreadsheet names it (0: A, 26: AA)."""
    out = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        out = chr(65 + rest) + out
    return out


def _shown(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (", ..." if len(names) > 20 else "")
