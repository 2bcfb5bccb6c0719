"""A feed's bytes -> records, whatever its format: the same batches for CSV, spreadsheets,
XML and JSON, so one mapper and one bulk core serve them all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from worker.errors import FeedError, TruncatedError
from worker.feedmapping import has_header_row
from worker.model import DEFAULT_MAX_FIELD_CHARS, Feed, FeedMapping
from worker.parsers import CutShort, RecordBatch, sniff
from worker.parsers.csv import CsvParser
from worker.parsers.spreadsheet import SpreadsheetRecords, ZipLimits
from worker.parsers.text import TextDecoder
from worker.settings import Settings
from worker.sources.transfer import Transfer
from worker.urls import FeedUrl

_DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


class Records(Protocol):
    """Bytes in, batches of records out; `header` names the values of each record once
    known (None for a CSV without a header row: its mapping gives column indexes)."""

    @property
    def header(self) -> list[str] | None: ...

    @property
    def details(self) -> dict[str, Any]: ...

    @property
    def delimiter(self) -> str:
        """Shown between the fields of a rejected record."""

    def feed(self, data: bytes) -> RecordBatch: ...

    def close(self, vouched: bool = True) -> RecordBatch:
        """The last records. Not `vouched` (the transport could not tell a cut download
        from a whole one), a document that ends where a whole one cannot raises CutShort."""


def configured_delimiter(feed: Feed) -> str | None:
    d = feed.delimiter
    if not d:
        return None
    d = _DELIMITERS.get(d.strip().lower(), d)
    if len(d) != 1 or d in "\r\n\"":
        raise FeedError(f"feed delimiter {feed.delimiter!r} must be one character")
    return d


class CsvRecords:
    """Decoding (BOM, configured encoding, UTF-8 with cp1252 fallback), the delimiter
    (configured, or sniffed from the first lines), the header row. `details` counts the
    lines rejected for a NUL byte (`nul_lines`)."""

    def __init__(self, feed: Feed, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> None:
        self.max_field_chars = max_field_chars
        self.has_header = feed.csv_has_header
        self.header: list[str] | None = None
        self.details: dict[str, Any] = {}
        self._delimiter = configured_delimiter(feed)
        self._decoder = TextDecoder(feed.encoding)
        self._parser: CsvParser | None = None
        self._held = ""  # text kept until there is enough to sniff the delimiter
        self._last = ""  # the last character of the text so far

    def feed(self, data: bytes) -> RecordBatch:
        return self._text(self._decoder.decode(data), final=False)

    def close(self, vouched: bool = True) -> RecordBatch:
        """Many CSV files lack the final line break: only a document whose transport could
        not vouch for its length must end with one (and not inside a quoted field)."""
        try:
            text = self._decoder.decode(b"", final=True)
        except FeedError:
            if vouched:
                raise
            raise CutShort("the file ends inside a character") from None
        batch = self._text(text, final=True)
        if not vouched and self._parser is not None:
            if self._parser.open_quote:
                raise CutShort("the file ends inside a quoted field")
            if self._last not in ("", "\n", "\r"):
                raise CutShort("the last line has no line break (a CSV must end with one "
                               "when the transport cannot vouch for its length)")
        return batch

    def _text(self, text: str, final: bool) -> RecordBatch:
        if text:
            self._last = text[-1]
        if self._parser is None:
            self._held += text
            if not final and self._held.count("\n") < 2 and len(self._held) < 65536:
                return RecordBatch()
            text, self._held = self._held, ""
            sniffed = self._delimiter is None
            delimiter = self._delimiter or sniff.delimiter(text[:65536])
            self._parser = CsvParser(delimiter, max_field_chars=self.max_field_chars)
            self.details.update(delimiter=delimiter, delimiter_sniffed=sniffed)
        batch = self._parser.feed(text, final)
        self.details["encoding"] = self._decoder.encoding
        if self._decoder.warnings:
            self.details["warnings"] = list(self._decoder.warnings)
        if self._parser.nul_lines:
            self.details["nul_lines"] = self._parser.nul_lines
        if self.has_header and self.header is None:
            if batch.errors and (not batch.rows or batch.errors[0][0] < batch.lines[0]):
                # Taking the next row as the header would map every column wrongly.
                line, _, reason = batch.errors[0]
                raise FeedError(f"the header row (line {line}) cannot be read: {reason}")
            if batch.rows:
                self.header = batch.rows[0]
                batch.rows, batch.lines = batch.rows[1:], batch.lines[1:]
        return batch

    @property
    def delimiter(self) -> str:
        return self._parser.delimiter if self._parser is not None else (self._delimiter or ",")


def records_for(feed: Feed, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
                limits: ZipLimits | None = None) -> Records:
    """The parser of the feed's resource type; a record with a field longer than
    `max_field_chars` (FEED_WORKER_MAX_FIELD_CHARS) is a reject; a spreadsheet's parts may
    inflate within `limits` (zip_limits)."""
    if feed.resource_type == "xml":
        from worker.parsers.xml import XmlRecords

        return _Structured(XmlRecords(feed.mapping.check(), max_field_chars))
    if feed.resource_type == "json":
        from worker.parsers.json import JsonRecords

        return _Structured(JsonRecords(feed.mapping.check(), max_field_chars))
    mapping = feed.mapping.check()
    if feed.resource_type == "spreadsheet":
        return SpreadsheetRecords(mapping.sheet, mapping.header_row, feed.csv_has_header,
                                  max_field_chars, limits)
    return _Sniffed(feed, max_field_chars, limits)


def zip_limits(settings: Settings) -> ZipLimits:
    """How far a spreadsheet's zip may inflate: as far as a zip feed's."""
    return ZipLimits(settings.max_decompressed_bytes, settings.max_inflation_ratio)


def rest(records: Records) -> Iterator[RecordBatch]:
    """The records a parser gives only once the file is whole, after `finish` (a
    spreadsheet's rows, in batches); none for the others."""
    more = getattr(records, "rest", None)
    return iter(()) if more is None else more()


def whole_file(feed: Feed) -> bool:
    """Whether no record can be read before the whole file is in (a spreadsheet)."""
    return feed.resource_type == "spreadsheet"


def sheets_export(feed: Feed) -> str:
    """The format a Google Sheets link is exported as (sources/sheets.py)."""
    return "xlsx" if feed.resource_type == "spreadsheet" else "csv"


class _Sniffed:
    """A CSV feed's records; a file that turns out to be a spreadsheet by its first bytes
    (XLS, or the zip of an XLSX or ODS) is read as one, its sheet and header row as the
    mapping says."""

    def __init__(self, feed: Feed, max_field_chars: int, limits: ZipLimits | None) -> None:
        self._feed = feed
        self.max_field_chars = max_field_chars
        self._limits = limits
        self._head = b""
        self._records: Records | None = None
        self._details: dict[str, Any] = {}

    @property
    def header(self) -> list[str] | None:
        return self._records.header if self._records is not None else None

    @property
    def details(self) -> dict[str, Any]:
        return self._records.details if self._records is not None else self._details

    @property
    def delimiter(self) -> str:
        return self._records.delimiter if self._records is not None else ","

    def feed(self, data: bytes) -> RecordBatch:
        records = self._records
        if records is None:
            self._head += data
            if sniff.spreadsheet_undecided(self._head):
                return RecordBatch()
            records = self._choose()
            data, self._head = self._head, b""
        return records.feed(data)

    def close(self, vouched: bool = True) -> RecordBatch:
        records = self._records
        if records is None:
            records = self._choose()
            if self._head:
                head, self._head = self._head, b""
                first = records.feed(head)
                last = records.close(vouched)
                return RecordBatch([*first.rows, *last.rows], [*first.lines, *last.lines],
                                   [*first.errors, *last.errors])
        return records.close(vouched)

    def rest(self) -> Iterator[RecordBatch]:
        return rest(self._records) if self._records is not None else iter(())

    def _choose(self) -> Records:
        feed = self._feed
        if sniff.spreadsheet_kind(self._head) is not None:
            mapping = feed.mapping
            self._records = SpreadsheetRecords(mapping.sheet, mapping.header_row,
                                               feed.csv_has_header, self.max_field_chars,
                                               self._limits)
        else:
            self._records = CsvRecords(feed, self.max_field_chars)
        return self._records


def needs_header(feed: Feed) -> bool:
    """Whether the mapper waits for a header: only a CSV without one does not."""
    return has_header_row(feed.resource_type, feed.csv_has_header)


def mapping_for(feed: Feed) -> FeedMapping:
    """What the mapper applies: for XML and JSON the parser already picked the fields
    (its header is their attribute names), so only the value maps and rules remain."""
    if feed.resource_type in ("xml", "json"):
        return FeedMapping(values=feed.mapping.values, rules=feed.mapping.rules)
    return feed.mapping


def next_page(records: Records, url: FeedUrl, pages: int, max_pages: int,
              link_header: str | None = None) -> FeedUrl | None:
    """The next page of a paginated API, if the page named one (in its body at the
    mapping's `next` path, or in a Link header)."""
    link = getattr(records, "next_url", None) or link_header
    if not link:
        return None
    if pages >= max_pages:
        raise FeedError(f"more than {max_pages} pages (FEED_WORKER_MAX_PAGES)")
    return url.join(str(link))


class _Structured:
    """An XML or JSON parser, seen as Records: its header is known from the start."""

    delimiter = ","

    def __init__(self, parser: Any) -> None:
        self._parser = parser
        self.header: list[str] | None = list(parser.header)
        # The parser's own (JSON: `format`, `nul_records`), so they reach the run's details.
        self.details: dict[str, Any] = parser.details

    @property
    def next_url(self) -> str | None:
        value = getattr(self._parser, "next_url", None)
        return str(value) if value else None

    def feed(self, data: bytes) -> RecordBatch:
        batch: RecordBatch = self._parser.feed(data)
        return batch

    def close(self, vouched: bool = True) -> RecordBatch:
        batch: RecordBatch = self._parser.close(vouched)
        return batch


def finish(records: Records, transfer: Transfer, compression: str | None) -> RecordBatch:
    """The last records of a download. A gzip member or zip entry that inflated to its
    end vouches for the document as the transport does; when neither does, a document
    whose end is not a whole one's fails the run as truncated, not as malformed."""
    vouched = transfer.vouched or compression in ("gzip", "zip")
    try:
        return records.close(vouched)
    except CutShort as exc:
        raise TruncatedError(transfer.received, exc.why) from None
