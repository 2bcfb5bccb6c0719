"""Spreadsheet feeds: XLSX, XLSM, XLSB, XLS and ODS.

A spreadsheet cannot be read from a stream (a zip's directory is at its end; an XLS is a
file system of its own), so the download is written to a temporary file (in TMPDIR; as
large as FEED_WORKER_MAX_FILE_BYTES allows) and read once it is whole: `close()` opens it
and reads the header row, `rest()` then gives the rows in batches, each cell as the text a
CSV export would hold (worker/parsers/cells.py), so that they are mapped exactly as a CSV
feed's rows are. Positions are the sheet's row numbers; empty rows are skipped.

An XLSX or XLSM (nearly every large feed) and an ODS are read as a stream, row by row, in
flat memory (worker/parsers/xlsxstream.py, worker/parsers/odsstream.py); an XLS (65,536
rows at most, by its format) or XLSB is read by python-calamine, which holds the sheet's
cells while it is read.

The sheet: `mapping.sheet` by name or 0-based index, else the first visible one. The
header: `mapping.headerRow` (the sheet's row number), else the first row that is not a
title (a single cell, in a sheet of several columns). A header cell merged down from a row
above takes that row's text, and one merged across several columns names each of them
(the second `Stock 2`, and so on); an ODS file's merged cells, which calamine does not
report, are read from its first HEAD_ROWS rows (worker/parsers/odsmerges.py), an XLSX's
(listed after its rows) only when the header has an empty name.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import weakref
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from lxml import etree

from worker.errors import FeedError, SourceError
from worker.model import DEFAULT_MAX_FIELD_CHARS
from worker.parsers import CutShort, RecordBatch, field_cap_reason
from worker.parsers.cells import letters, row_texts
from worker.parsers.odsmerges import ods_merges
from worker.parsers.odsstream import OdsStream
from worker.parsers.sniff import OLE2_MAGIC, ZIP_MAGIC
from worker.parsers.xlsxcells import Row
from worker.parsers.xlsxstream import Merge, SheetStream, Unreadable, choose_sheet

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
    (FEED_WORKER_MAX_DECOMPRESSED_BYTES, FEED_WORKER_MAX_INFLATION_RATIO): calamine
    inflates them in memory, the XLSX stream its shared strings to a temporary file, so a
    zip bomb is refused before it is opened."""

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
        self._rows: Iterator[Row] | None = None
        self._stopper: weakref.finalize[Any, Any] | None = None  # closes a streamed sheet
        self._width = 0
        self._wide = True  # whether the sheet has several columns (a title row has one)
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
        out: list[list[str]] = []
        lines: list[int] = []
        errors: list[tuple[int, str, str]] = []
        flagged: list[tuple[int, int, str]] = []
        try:
            for number, texts, bad in rows:
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
                elif len(texts) > width:  # empty cells past the sheet's declared extent
                    while len(texts) > width and not texts[-1]:
                        texts.pop()
                if bad is not None:
                    flagged.extend((number, column, code) for column, code in bad)
                out.append(texts)
                lines.append(number)
                if len(out) >= BATCH_ROWS:
                    yield RecordBatch(out, lines, errors, flagged)
                    out, lines, errors, flagged = [], [], [], []
            if out or errors:
                yield RecordBatch(out, lines, errors, flagged)
        finally:
            self._rows = None
            self._stop()

    def _open(self, kind: str) -> None:
        if self._file is None:  # pragma: no cover - close() checked it
            raise RuntimeError("no file to open")
        path = self._file.name
        try:
            if kind == "office-zip":
                kind = _zip_kind(path, self.limits)
            if kind == "xlsx":
                self._open_stream(path)
                return
            if kind == "ods":
                self._open_ods(path)
                return
        finally:
            if kind in ("xlsx", "ods", "office-zip"):
                self._drop()  # the reader has the file open: its name is not needed
        self._open_calamine(path, kind)

    def _open_stream(self, path: str) -> None:
        """An XLSX (or XLSM) read as it goes (worker/parsers/xlsxstream.py)."""
        try:
            stream = SheetStream(path, self.sheet)
        except (zipfile.BadZipFile, OSError) as exc:
            raise Unreadable(f"the XLSX file cannot be read: {exc}") from None
        self._stopper = weakref.finalize(self, stream.close)
        self.details.update(format="xlsx", sheet=stream.name)
        self._pad = 0
        self._width = stream.width
        self._wide = stream.width - stream.first_column > 1 if stream.width else True
        self._rows = stream.rows()
        if self.has_header:
            try:
                self.header = self._header(self._rows, stream.merges)
            except BaseException:
                self._stop()
                raise

    def _open_ods(self, path: str) -> None:
        """An ODS read as it goes (worker/parsers/odsstream.py); its header's merged cells
        from its first rows (worker/parsers/odsmerges.py)."""
        try:
            stream = OdsStream(path, self.sheet)
        except (zipfile.BadZipFile, OSError) as exc:
            raise Unreadable(f"the ODS file cannot be read: {exc}") from None
        self._stopper = weakref.finalize(self, stream.close)
        self._pad = 0
        rows = _guarded(stream.rows())
        try:
            # the sheet's width, and whether it has several columns, from its first rows (a
            # title row has one cell): the whole sheet's are known only at its end
            head = list(itertools.islice(rows, HEAD_ROWS))
        except BaseException:
            self._stop()
            raise
        self._wide = any(sum(1 for t in texts if t) > 1 for _, texts, _ in head)
        self._width = max((len(texts) for _, texts, _ in head), default=0)
        self.details.update(format="ods", sheet=stream.name)
        self._rows = itertools.chain(head, rows)
        if self.has_header:
            merged = ods_merges(path, stream.name or "", self.header_row or HEAD_ROWS)
            try:
                self.header = self._header(self._rows, lambda: merged)
            except BaseException:
                self._stop()
                raise

    def _open_calamine(self, path: str, kind: str) -> None:
        """An XLS, XLSB or ODS, read whole by python-calamine (an XLS holds at most
        65,536 rows)."""
        from python_calamine import CalamineError, CalamineWorkbook

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
            cells = enumerate(sheet.iter_rows(), start=start[0] + 1)
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
        self._wide = sheet.width > 1
        self._rows = ((n, row_texts(row), None) for n, row in cells)
        if self.has_header:
            self.header = self._header(self._rows, lambda: merged)

    def _sheet(self, workbook: Any) -> Any:
        from python_calamine import SheetTypeEnum, SheetVisibleEnum

        names: list[str] = workbook.sheet_names
        visible = [m.name for m in workbook.sheets_metadata
                   if m.visible == SheetVisibleEnum.Visible and m.typ == SheetTypeEnum.WorkSheet]
        return workbook.get_sheet_by_index(choose_sheet(names, visible, self.sheet))

    def _header(self, rows: Iterator[Row], merges: Callable[[], list[Merge]]
                ) -> list[str] | None:
        """Reads up to the header row: `mapping.headerRow`, else the first row that is
        neither empty nor a title (a single cell, in a sheet of several columns). Merged
        cells are looked up only when the header has an empty name (a merge leaves its
        other cells empty)."""
        above: dict[int, list[str]] = {}
        wide = self._wide
        for number, cells, _ in rows:
            texts = [""] * self._pad + cells
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
            if len(texts) < self._width:
                texts += [""] * (self._width - len(texts))
            self._width = len(texts)
            return _merged_names(number, texts, above, merges()) if "" in texts else texts
        if self.header_row is not None:
            raise FeedError(f"mapping.headerRow {self.header_row}: the sheet has no such row")
        return None

    def _drop(self) -> None:
        if self._closer is not None:
            self._closer()

    def _stop(self) -> None:
        if self._stopper is not None:
            self._stopper()


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


def _guarded(rows: Iterator[Row]) -> Iterator[Row]:
    """An ODS's rows, a malformed content.xml failing as an unreadable file."""
    try:
        yield from rows
    except etree.XMLSyntaxError as exc:
        raise Unreadable(f"the ODS file cannot be read: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Unreadable(f"the ODS file cannot be read: {exc}") from None


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
