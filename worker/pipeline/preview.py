"""The head of a feed, read and mapped as a pull would, but written nowhere: what
`feed-worker preview` prints and what the HTTP API can return.

The same parts as a pull's stream (pipeline/stream.py): open_source with its guards and
caps, decompression, the parser of the feed's format, the Mapper; then the verdict of
pipeline/matches.py on the sample. Reading stops at the N-th record (or after HEAD_BYTES of
document without enough records) and the download is closed: only the head is fetched.
No database, no printing: the caller loads the feed and shows the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson

from worker.errors import DeadlineExceeded, FeedError
from worker.mapping import Mapper
from worker.model import ATTRIBUTES, EXTRA_ATTRIBUTES, Feed
from worker.parsers import RecordBatch
from worker.parsers.cells import reject_error_cells
from worker.parsers.jsonshape import JsonShapeError
from worker.parsers.spreadsheet import FORMAT_NAMES as SPREADSHEET_FORMATS
from worker.pipeline import formats, matches
from worker.pipeline.stream import PARSE_PIECE
from worker.presets import preset_for
from worker.settings import Settings
from worker.sources import open_source
from worker.sources.names import file_rule
from worker.urls import FeedUrl, mask

# Document bytes (inflated) read at most while looking for the sample's records: a record
# path that matches nothing must not make a preview read a whole 2 GB file.
HEAD_BYTES = 16 * 1024 * 1024
DEFAULT_ROWS = 20
MAX_ROWS = 1000  # a preview is a look at the head, not an export

# Staging column -> attribute: the Mapper speaks columns (COPY's), the preview attributes.
_ATTRIBUTE_OF = {column: attr for attr, column in ATTRIBUTES.items()}
# The order attributes are shown in: the key first, then the model's order; a quantity
# sum's locations (mapping.rules.quantity.locations) last.
ORDER = (*ATTRIBUTES, *EXTRA_ATTRIBUTES, "locations")
_UNESCAPE = re.compile(r"\\(.)")
_ESCAPED = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


@dataclass(frozen=True)
class Row:
    """One sampled record: the values a pull would write (attribute -> text, "" for
    NULL), or why it would be rejected and its text."""

    position: int               # CSV: the line it starts on; XML, JSON: the record number
    values: dict[str, str] = field(default_factory=dict)
    reject: str | None = None
    raw: str = ""


@dataclass(frozen=True)
class Coverage:
    """How many of the sampled records had a value for one mapped attribute."""

    attribute: str
    source: str       # the CSV column (its header name, or index), the XPath, the dotted path
    origin: str       # "fields" (the feed's own), "preset", "template" (auto-mapped), or
                      # "rules" (a source of mapping.rules.quantity.sum)
    matched: int
    sampled: int
    written: bool     # False: no sampled record has it and a pull would leave it as stored


@dataclass
class Preview:
    feed_id: int
    source: str                         # the URL read, password masked
    format: str                         # csv, xml, json or ndjson
    compression: str | None = None      # none, gzip, zip (None: the file was empty)
    encoding: str | None = None
    delimiter: str | None = None        # CSV
    delimiter_sniffed: bool = False
    header: list[str] | None = None     # CSV: the header row
    record_path: str | None = None      # XML, JSON: mapping.record ("" for JSON's top level)
    columns: list[str] = field(default_factory=list)  # the attributes the rows show
    rows: list[Row] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)  # values each value rule changed
    skipped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason
    problems: list[str] = field(default_factory=list)  # why the mapping cannot work
    warnings: list[str] = field(default_factory=list)
    bytes_read: int = 0                 # as downloaded (before inflating)
    complete: bool = False              # the whole document was read

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The preview as JSON-ready values (the HTTP API's answer), with `ok`."""
        return {**asdict(self), "ok": self.ok}


class _Stop(Exception):
    """The mapping cannot be applied to this file (a problem, not a failed download)."""


async def preview(feed: Feed, url: str, settings: Settings, rows: int = DEFAULT_ROWS, *,
                  local_files: bool = False, head_bytes: int = HEAD_BYTES) -> Preview:
    """The first `rows` records (1 to MAX_ROWS) of the feed's file at `url`, mapped; the
    mapping's problems in `problems`. Raises FeedError (and its kinds: SourceError,
    TransientSourceError, DeadlineExceeded) when the file cannot be read at all.
    `local_files`: file:// allowed (a person's --url only, as for import)."""
    out = Preview(feed.id, mask(url), _format(feed))
    if feed.resource_type in ("xml", "json"):
        out.record_path = feed.mapping.record
    if feed.mapping.error is not None:
        out.problems.append(feed.mapping.error)
        return out
    sample = _Sample(feed, settings, min(max(1, rows), MAX_ROWS), out)
    deadline_s = feed.download_deadline_s or settings.download_deadline_s
    download = open_source(FeedUrl.parse(url), settings, local_files=local_files,
                           token=feed.authentication_token, zip_entry=feed.mapping.zip_entry,
                           sheet=feed.mapping.sheet, rule=file_rule(feed.mapping),
                           source=feed.mapping.source,
                           export=formats.sheets_export(feed))
    if formats.whole_file(feed):  # a spreadsheet: no record before its last byte
        head_bytes = settings.max_file_bytes
    inflated = 0
    try:
        async with asyncio.timeout(deadline_s), contextlib.aclosing(download):
            async for chunk in download:
                inflated += len(chunk)
                out.bytes_read = download.transfer.received
                if sample.take_bytes(chunk) or inflated >= head_bytes:
                    break
            else:
                out.bytes_read = download.transfer.received
                sample.take(formats.finish(sample.records, download.transfer,
                                           download.compression))
                for batch in formats.rest(sample.records):
                    sample.take(batch)
                    if sample.count >= sample.limit:
                        break
                out.complete = True
    except TimeoutError:
        raise DeadlineExceeded(f"the preview's download took longer than {deadline_s:g} s "
                               "(FEED_WORKER_DOWNLOAD_DEADLINE_S, or the feed's "
                               "download_deadline_s)") from None
    except _Stop as exc:
        out.problems.append(str(exc))
    except JsonShapeError as exc:  # the document has no array at mapping.record
        out.problems.append(str(exc))
    out.compression = download.compression
    out.source = download.chosen.get("file", out.source)  # the file a pattern took
    found = sample.records.details.get("format")
    if found == "ndjson" or found in SPREADSHEET_FORMATS:  # recognised by its lines, bytes
        out.format = found
    sample.judge(head_bytes if not out.complete and inflated >= head_bytes else None)
    return out


def _format(feed: Feed) -> str:
    if feed.resource_type == "xml":
        return "xml"
    if feed.resource_type == "json":
        return "ndjson" if feed.mapping.ndjson else "json"
    return "csv"


class _Sample:
    """Records in, until there are enough: parsed, mapped and kept as Rows."""

    def __init__(self, feed: Feed, settings: Settings, limit: int, out: Preview) -> None:
        self.feed = feed
        self.settings = settings
        self.limit = limit
        self.out = out
        self.records: formats.Records = formats.records_for(feed, settings.max_field_chars,
                                                            formats.zip_limits(settings))
        self.mapper: Mapper | None = None
        self.count = 0  # records taken, rejected ones included

    def take_bytes(self, chunk: bytes) -> bool:
        """Parses the chunk; whether the sample is full."""
        if self.out.encoding is None and self.feed.resource_type in ("xml", "json"):
            self.out.encoding = _declared_encoding(chunk, self.feed.resource_type)
        for start in range(0, len(chunk), PARSE_PIECE):
            self.take(self.records.feed(chunk[start:start + PARSE_PIECE]))
            if self.count >= self.limit:
                return True
        return False

    def take(self, batch: RecordBatch) -> None:
        details = self.records.details
        if self.feed.resource_type not in ("xml", "json"):
            self.out.encoding = details.get("encoding", self.out.encoding)
            self.out.delimiter = details.get("delimiter", self.out.delimiter)
            self.out.delimiter_sniffed = bool(details.get("delimiter_sniffed"))
            self.out.header = self.records.header
        if self.mapper is None and (self.records.header is not None
                                    or not formats.needs_header(self.feed)):
            self._set_mapper()
        if batch.cell_errors and self.mapper is not None:
            batch = reject_error_cells(batch, self.mapper.sources, self.records.delimiter)
        if not all(batch.rows):  # blank CSV lines: no records (the mapper skips them too)
            kept_lines = [n for r, n in zip(batch.rows, batch.lines, strict=True) if r]
            batch = RecordBatch([r for r in batch.rows if r], kept_lines, batch.errors)
        rows, lines, errors = _first(batch, self.limit - self.count)
        self.count += len(rows) + len(errors)
        kept = [Row(line, reject=reason, raw=raw) for line, raw, reason in errors]
        if rows and self.mapper is not None:
            mapped = self.mapper.map(rows, lines)
            kept += [Row(r.position, reject=r.reason, raw=r.raw) for r in mapped.rejects]
            kept += self._rows(mapped.text)
        self.out.rows = sorted([*self.out.rows, *kept], key=lambda r: r.position)

    def _set_mapper(self) -> None:
        feed = self.feed
        try:
            self.mapper = Mapper(formats.mapping_for(feed), self.records.header,
                                 feed.decimal_notation, self.records.delimiter,
                                 positions=True)
        except FeedError as exc:  # a mapped column the header lacks, no externalId
            raise _Stop(str(exc)) from None

    def _rows(self, text: str) -> list[Row]:
        """The mapper's COPY text (a position, then its columns) back into values."""
        assert self.mapper is not None
        columns = self.mapper.columns
        out = []
        for line in text.split("\n")[:-1]:
            position, *fields = line.split("\t")
            values: dict[str, str] = {}
            for column, value in zip(columns, fields, strict=True):
                value = _UNESCAPE.sub(lambda m: _ESCAPED.get(m[1], m[1]), value)
                if column == "extra":
                    extra = orjson.loads(value) if value else {}
                    values.update((k, v if isinstance(v, str) else orjson.dumps(v).decode())
                                  for k, v in extra.items())
                else:
                    values[_ATTRIBUTE_OF[column]] = value
            out.append(Row(int(position), values))
        return out

    def judge(self, cut_at: int | None) -> None:
        """Coverage, problems and warnings of the sample, as a pull would judge the file
        (`cut_at`: the document bytes reading stopped at, not having found enough records)."""
        out, feed, mapper = self.out, self.feed, self.mapper
        warnings = self.records.details.get("warnings")
        if warnings:
            out.warnings.extend(warnings)
        if out.problems:
            return
        structured = feed.resource_type in ("xml", "json")
        if mapper is None:
            out.problems.append("the file is empty" if out.bytes_read == 0
                                else "the file has no header row")
            return
        if self.count == 0:
            why = (matches.no_records(feed.mapping, feed.resource_type) if structured
                   else "no records after the header row")
            if cut_at is not None:
                why += f" (in the first {cut_at:,} bytes of the document)"
            out.problems.append(why)
            return
        verdict = matches.judge(feed.mapping, feed.resource_type, mapper.matched,
                                mapper.records, self.settings.min_attribute_match_share)
        out.problems.extend(verdict.errors)
        out.warnings.extend(verdict.warnings)
        if mapper.applier is not None:
            out.rules = dict(mapper.applier.counts)
        out.skipped = dict(mapper.skipped)
        out.coverage = sorted((self._coverage(attr, count, verdict.unwritten)
                               for attr, count in mapper.matched.items()),
                              key=lambda c: (ORDER.index(_base(c.attribute)), c.attribute))
        # A quantity sum's sources ("inventoryQuantity (berlin)") give inventoryQuantity.
        shown = {_base(c.attribute) for c in out.coverage if c.written}
        for made in ("currency", "locations"):  # the prices' codes (105.29 USD); the sum's
            if any(r.values.get(made) for r in out.rows):
                shown.add(made)
        out.columns = [a for a in ORDER if a in shown]
        # What a pull would not write (no sampled record has it) is no value of the rows.
        out.rows = [r if r.reject is not None else
                    replace(r, values={a: v for a, v in r.values.items() if a in shown})
                    for r in out.rows]
        if out.rows and all(r.reject is not None for r in out.rows):
            first = out.rows[0]
            out.problems.append(f"all {len(out.rows)} sampled records were rejected (first: "
                                f"{first.position}: {first.reject})")

    def _coverage(self, attr: str, count: int, unwritten: set[str]) -> Coverage:
        mapping, mapper = self.feed.mapping, self.mapper
        assert mapper is not None
        summed = dict(mapping.rules.quantity.sources) if mapping.rules.quantity else {}
        header = self.records.header
        if attr != _base(attr):  # a source of the quantity sum
            src = summed[attr[len(_base(attr)) + 2:-1]]
            source = header[src] if isinstance(src, int) and header is not None else str(src)
        elif self.feed.resource_type in ("xml", "json"):
            source = str(mapping.fields[attr])
        else:
            index = mapper.source[attr]
            source = header[index] if header is not None else str(index)
        preset = preset_for(mapping.preset, self.feed.resource_type)
        if attr != _base(attr):
            origin = "rules"
        elif attr in mapping.fields and attr not in mapping.optional:
            origin = "fields"
        elif attr in (preset.fields if preset is not None else ()):
            origin = "preset"
        else:
            origin = "template"
        return Coverage(attr, source, origin, count, mapper.records, attr not in unwritten)


_XML_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)""")


def _declared_encoding(head: bytes, resource_type: str) -> str:
    """The document's encoding as its first bytes give it: a byte-order mark, else the XML
    declaration's; UTF-8 without either (JSON is UTF-8 by its RFC)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8 (byte-order mark)"
    found = _XML_DECLARATION.match(head[:512]) if resource_type == "xml" else None
    return found[1].decode("ascii").lower() if found else "utf-8"


def _base(attr: str) -> str:
    """The attribute a counted column gives: "inventoryQuantity (berlin)", a source of the
    quantity sum, gives inventoryQuantity."""
    return attr.split(" (", 1)[0]


def _first(batch: RecordBatch, need: int
           ) -> tuple[list[list[str]], list[int], list[tuple[int, str, str]]]:
    """The batch's first `need` records, in file order (rows and unreadable ones)."""
    lines, errors = list(batch.lines), batch.errors
    if len(lines) + len(errors) <= need:
        return batch.rows, lines, errors
    if need <= 0:
        return [], [], []
    last = sorted([*lines, *(e[0] for e in errors)])[need - 1]
    rows = [r for r, n in zip(batch.rows, lines, strict=True) if n <= last]
    return rows, [n for n in lines if n <= last], [e for e in errors if e[0] <= last]
