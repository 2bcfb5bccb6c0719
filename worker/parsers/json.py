"""JSON records from byte chunks, incrementally, in RecordBatches (as the CSV parser).

The records are the elements of an array: the whole document (`[...]`), or the array at
`mapping.record` (a dotted path, `data.items`); or the lines of newline-delimited JSON.
ijson's C backend (yajl) does the parsing, driven through its async API by hand, behind
guards against what yajl alone would let through (see worker/parsers/jsonstream.py).
Values become texts in jsonrows.py; what is refused, and why, is said in jsonshape.py.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import orjson

from worker.errors import FeedError
from worker.model import DEFAULT_MAX_FIELD_CHARS, FeedMapping
from worker.parsers import CutShort, RecordBatch, field_cap_reason, jsonrows, jsonshape
from worker.parsers.jsonshape import JsonShapeError
from worker.parsers.jsonstream import PIECE, Guard, JsonSyntaxError, Stream

MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of newline-delimited JSON
_PROBE = 16 * 1024                 # bytes at a time for the parser that looks for the array


class _Out:
    """A batch being filled (RecordBatch's lines are a Sequence: ranges for the CSV parser)."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        self.errors: list[tuple[int, str, str]] = []

    def batch(self) -> RecordBatch:
        return RecordBatch(self.rows, self.lines, self.errors)


_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


class JsonRecords:
    """Bytes in, records out: `feed(data)` as they arrive, then `close()`. Each batch's rows
    hold one text per `header` attribute ("" where the record lacks the path); `lines` are
    record numbers (1-based); a record that is not an object, holds a NUL (counted in
    `details["nul_records"]`) or a field longer than `max_field_chars` lands in `errors` and
    the rest go on. Malformed JSON raises JsonSyntaxError (a FeedError) naming the byte; JSON
    without records where the mapping says raises JsonShapeError."""

    def __init__(self, mapping: FeedMapping,
                 max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> None:
        self.max_field_chars = max_field_chars
        self.header = list(mapping.fields)
        self._row = jsonrows.row_maker([tuple(str(p).split(".")) for p in mapping.fields.values()])
        self._record = mapping.record
        self._ndjson = mapping.ndjson
        self._next_path = mapping.next
        self.next_url: str | None = None
        self.records = 0        # records read (rows and errors)
        self.details: dict[str, Any] = {}
        self._mode = ""         # "", array, path, ndjson, guess (maybe ndjson), single
        self._head = b""        # the first bytes, until they are known not to be a BOM
        self._bom_checked = False
        self._offset = 0        # document bytes taken so far
        self._guard = Guard()
        self._main: Stream | None = None
        self._probe: Stream | None = None   # path mode: finds what is at mapping.record
        self._found = False                  # ... an array
        self._next: Stream | None = None
        self._first = ""        # the document's first character
        # newline-delimited JSON
        self._partial: list[bytes] = []      # the line being read
        self._partial_size = 0
        self._lines = 0         # lines read
        self._values = 0        # values read (one a line)
        self._kept: list[bytes] | None = None  # guess mode: bytes read, to read again
        self._held: list[Any] = []           # guess mode: the first value
        self._nul = False       # a \u0000 was seen
        self._last = b""        # the end of the last piece (an escape may straddle)
        self._failed: FeedError | None = None

    # -- public

    def feed(self, data: bytes) -> RecordBatch:
        return self._guarded(data, final=False)

    def close(self, vouched: bool = True) -> RecordBatch:
        """The last records. Not `vouched` (the transport could not tell a cut download from
        a whole one), a document that does not end cleanly (an array or object not closed,
        a last line of newline-delimited JSON that is not a whole value) raises CutShort
        rather than JsonSyntaxError. A last line without its line break that is a whole
        value is taken: its closing brace ends it as surely."""
        return self._guarded(b"", final=True, vouched=vouched)

    # -- driving

    def _guarded(self, data: bytes, final: bool, vouched: bool = True) -> RecordBatch:
        if self._failed is not None:
            raise self._failed
        out = _Out()
        try:
            for i in range(0, len(data), PIECE):
                self._take(data[i:i + PIECE], out)
            if final and vouched:
                self._finish(out)
            elif final:
                self._finish_cut(out)
        except FeedError as exc:
            self._failed = exc
            raise
        return out.batch()

    def _take(self, data: bytes, out: _Out) -> None:
        if not self._mode:
            data = self._start(data)
            if not self._mode:
                return
        if not data:
            return
        if not self._nul:
            window = self._last + data
            self._nul = b"\\u0000" in window  # rows are checked for NUL from then on
            self._last = window[-5:]
        bad = self._guard.check(data)
        if bad is not None:
            cut, reason = bad
            offset = self._offset + cut
            self._dispatch(data[:cut], out)
            raise JsonSyntaxError(reason, offset)
        self._dispatch(data, out)

    def _start(self, data: bytes) -> bytes:
        """Skips what comes before the first byte that is not whitespace (a UTF-8 BOM at
        the very start is accepted); that byte picks the mode. Returns the bytes to parse."""
        if not self._bom_checked:
            head = self._head + data
            if len(head) < 3 and _BOM.startswith(head):
                self._head = head
                return b""
            self._bom_checked, self._head = True, b""
            if head.startswith(_BOM):
                self._offset = 3
                head = head[3:]
            data = head
        body = data.lstrip(_WHITESPACE)
        self._offset += len(data) - len(body)
        if not body:
            return b""
        first = chr(body[0])
        self._first = first
        if self._record:
            self._mode = "path"
            self._main = Stream(f"{self._record}.item")
            self._probe = Stream(None)
            if self._next_path:
                self._next = Stream(self._next_path)
        elif self._ndjson:
            self._mode = "ndjson"
            self._main = Stream("", multiple_values=True)
        elif first == "[":
            self._mode = "array"
            self._main = Stream("item")
        elif first == "{":
            self._mode = "guess"
            self._main = Stream("", multiple_values=True)
            self._kept = []
        else:
            self._single()
        for stream in self._streams():
            stream.end = self._offset
        return body

    def _streams(self) -> list[Stream]:
        return [s for s in (self._main, self._probe, self._next) if s is not None]

    def _single(self) -> None:
        """One JSON value that is not an array of records: read to the end (for its
        errors) without building it, then refused for its shape."""
        self._mode = "single"
        # A prefix no document has (ijson joins keys with dots): nothing is built.
        self._main = Stream("\x00\x00not-a-path\x00\x00")

    def _dispatch(self, data: bytes, out: _Out) -> None:
        if not data:
            return
        self._offset += len(data)
        mode = self._mode
        if mode in ("ndjson", "guess"):
            self._lines_in(data, out)
            return
        values: list[Any] = []
        if self._main is not None:
            self._main.send(data, values)
        if self._next is not None:
            self._next_value(data)
        if mode == "path":
            if values:
                self._found = True
                self._probe = None
            elif self._probe is not None:
                self._look(data)
        if values:
            self._emit(values, out)

    def _finish_cut(self, out: _Out) -> None:
        """_finish, where an error at the end (everything before it was read well) is
        the document's end missing."""
        try:
            self._finish(out)
        except JsonSyntaxError as exc:
            if not self._mode:  # empty
                raise
            at = f" at byte {exc.offset}" if exc.offset is not None else ""
            what = ("the last line is not a whole JSON value" if self._mode == "ndjson"
                    else "the JSON document is not closed")
            raise CutShort(f"{what} ({exc.reason}{at})") from None

    def _finish(self, out: _Out) -> None:
        if not self._mode:
            raise JsonSyntaxError("the document is empty" if not self._head
                                  else "no JSON value", self._offset + len(self._head))
        if self._mode in ("ndjson", "guess"):
            self._last_line(out)
            if self._mode == "guess":  # never a second value: one object, not lines
                self._mode = "single"
                raise JsonShapeError(jsonshape.document_message(self._first))
            if self._mode == "ndjson":
                return
        values: list[Any] = []
        if self._main is not None:
            self._main.close(values)
        if self._next is not None:
            self._next_value(b"", final=True)
        if self._mode == "path" and not values and self._probe is not None:
            self._look(b"", final=True)
        if values:
            self._found = self._found or self._mode == "path"
            self._emit(values, out)
        if self._mode == "single":
            raise JsonShapeError(jsonshape.document_message(self._first))
        if self._mode == "path" and not self._found:
            raise JsonShapeError(f"the document has no array at {self._record!r} "
                                 "(mapping.record)")

    # -- path mode: what is at mapping.record, the next page's link

    def _look(self, data: bytes, final: bool = False) -> None:
        """Feeds the event parser (a small piece at a time: it is slow) until it meets
        mapping.record: an array there is what we want, anything else is refused."""
        probe, record = self._probe, self._record
        if probe is None:
            return
        pieces = [data[i:i + _PROBE] for i in range(0, len(data), _PROBE)]
        for piece in pieces:
            events: list[tuple[str, str, Any]] = []
            probe.send(piece, events)
            if self._decide(events, record):
                return
        if final:
            events = []
            probe.close(events)
            self._decide(events, record)

    def _decide(self, events: list[tuple[str, str, Any]], record: str) -> bool:
        if not jsonshape.array_at(events, record):
            return False
        self._found = True
        self._probe = None
        return True

    def _next_value(self, data: bytes, final: bool = False) -> None:
        found: list[Any] = []
        if self._next is None:
            return
        if final:
            self._next.close(found)
        else:
            self._next.send(data, found)
        if found and self.next_url is None:
            value = found[0]
            self.next_url = None if value is None else jsonrows.value_text(value) or None

    # -- records

    def _emit(self, values: list[Any], out: _Out) -> None:
        base = self.records
        self.records += len(values)
        row = self._row
        rows, lines = out.rows, out.lines
        try:
            if all(v.__class__ is dict for v in values):
                new = list(map(row, values))
                if ((not self._nul or "\x00" not in "".join(chain.from_iterable(new)))
                        and max(map(len, chain.from_iterable(new)), default=0)
                        <= self.max_field_chars):
                    rows += new
                    lines += range(base + 1, base + 1 + len(values))
                    return
        except (TypeError, ValueError, KeyError, orjson.JSONEncodeError):
            pass  # one of them is bad: record by record, below
        for i, value in enumerate(values, base + 1):
            self._one(i, value, out)

    def _one(self, n: int, value: Any, out: _Out) -> None:
        if not isinstance(value, dict):
            out.errors.append((n, jsonrows.raw(value),
                               f"record {n} is {jsonrows.kind(value)}, not an object"))
            return
        try:
            row = self._row(value)
        except (TypeError, ValueError, KeyError, orjson.JSONEncodeError) as exc:
            out.errors.append((n, jsonrows.raw(value), f"record {n} cannot be read: {exc}"))
            return
        if "\x00" in "".join(row):
            self.details["nul_records"] = self.details.get("nul_records", 0) + 1
            out.errors.append((n, jsonrows.raw(value),
                               "a value holds a NUL character (\\u0000)"))
            return
        longest = max(map(len, row), default=0)
        if longest > self.max_field_chars:
            name = self.header[[len(v) for v in row].index(longest)]
            out.errors.append((n, jsonrows.raw(value),
                               field_cap_reason(name, longest, self.max_field_chars)))
            return
        out.rows.append(row)
        out.lines.append(n)

    # -- newline-delimited JSON

    def _lines_in(self, data: bytes, out: _Out) -> None:
        """Whole lines go to the parser; each must hold exactly one value."""
        if self._kept is not None:
            self._kept.append(data)
        cut = data.rfind(b"\n") + 1
        if not cut:
            self._partial.append(data)
            self._partial_size += len(data)
            if self._partial_size > MAX_LINE_BYTES:
                if self._mode == "guess":
                    self._not_lines()
                    return
                raise JsonSyntaxError(f"line {self._lines + 1} is longer than "
                                      f"{MAX_LINE_BYTES} bytes", None,
                                      self._offset - self._partial_size, self._offset)
            return
        block = b"".join([*self._partial, data[:cut]]) if self._partial else data[:cut]
        rest = data[cut:]
        self._partial = [rest] if rest else []
        self._partial_size = len(rest)
        self._block(block, out, final=False)

    def _last_line(self, out: _Out) -> None:
        block = b"".join(self._partial)
        self._partial, self._partial_size = [], 0
        self._block(block, out, final=True)

    def _block(self, block: bytes, out: _Out, final: bool) -> None:
        stream = self._main
        if stream is None:
            return
        lines = block.split(b"\n")
        if not final:
            lines.pop()  # after the last \n
        expected = sum(map(bool, map(bytes.strip, lines)))
        values: list[Any] = []
        try:
            stream.send(block, values)
            if final:
                stream.close(values)
        except JsonSyntaxError as exc:
            if self._mode == "guess":
                self._not_lines()
                return
            if exc.offset is not None:
                before = block[:max(exc.offset - stream.start, 0)]
                raise JsonSyntaxError(exc.reason, exc.offset,
                                      line=self._lines + before.count(b"\n") + 1) from None
            raise
        if len(values) != expected:
            if self._mode == "guess":
                self._not_lines()
                return
            raise jsonshape.bad_line(lines, stream.start, self._lines)
        self._lines += len(lines)
        if self._mode == "guess":
            self._held += values
            if self._values + len(values) < 2:
                self._values += len(values)
                return
            self._mode, self._kept = "ndjson", None  # lines of JSON: the held value goes too
            values, self._held = self._held, []
            self._values = 0
            self.details["format"] = "ndjson"
        self._values += len(values)
        if values:
            self._emit(values, out)

    def _not_lines(self) -> None:
        """A document opening with `{` that is not lines of JSON: one value (parsed again
        from the start, without building it), refused for its shape once read."""
        kept = b"".join(self._kept or [])
        self._kept, self._held, self._partial, self._partial_size = None, [], [], 0
        start = self._offset - len(kept)
        self._single()
        if self._main is not None:
            self._main.end = start
            self._main.send(kept, [])

