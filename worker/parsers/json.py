"""JSON records from byte chunks, incrementally, in RecordBatches (as the CSV parser).

The records are the elements of an array: the whole document (`[...]`), or the array at
`mapping.record` (a dotted path, `data.items`); or the lines of newline-delimited JSON.
A top-level array and lines take the fast path (jsonchunk.py: whole records cut out of the
bytes, decoded in runs by msgspec); records at a path, and whatever the fast path is not
sure of, are read by ijson's C backend (yajl), driven through its async API by hand. Both
run behind guards against what the parsers alone would let through (jsonstream.py).
Values become rows in jsontake.py and texts in jsonrows.py; what is refused, and why, is
said in jsonshape.py.
"""

from __future__ import annotations

from typing import Any

from worker.errors import FeedError
from worker.model import DEFAULT_MAX_FIELD_CHARS, FeedMapping
from worker.parsers import CutShort, RecordBatch, jsonrows, jsonshape
from worker.parsers.jsonchunk import ArrayRuns, Unsure, decode_lines
from worker.parsers.jsonshape import JsonShapeError
from worker.parsers.jsonstream import PIECE, Guard, JsonSyntaxError, Stream
from worker.parsers.jsontake import Out, Rows

MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of newline-delimited JSON


_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


class JsonRecords:
    """Bytes in, records out: `feed(data)` as they arrive, then `close()`. Each batch's rows
    hold one text per `header` attribute ("" where the record lacks the path); `lines` are
    record numbers (1-based); a record that is not an object, holds a NUL (counted in
    `details["nul_records"]`) or a field longer than `max_field_chars` lands in `errors` and
    the rest go on. Malformed JSON raises JsonSyntaxError (a FeedError) naming the byte; JSON
    without records where the mapping says raises JsonShapeError. Not `fast`: ijson reads
    everything (the fast path gives the same rows, errors and failures)."""

    def __init__(self, mapping: FeedMapping,
                 max_field_chars: int = DEFAULT_MAX_FIELD_CHARS, fast: bool = True) -> None:
        self.max_field_chars = max_field_chars
        self.header = list(mapping.fields)
        self.details: dict[str, Any] = {}
        self._rows = Rows(self.header, [tuple(str(p).split(".")) for p in mapping.fields.values()],
                          max_field_chars, self.details)
        self._record = mapping.record
        self._ndjson = mapping.ndjson
        self._next_path = mapping.next
        self.next_url: str | None = None
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
        self._last = b""        # the end of the last piece (an escape may straddle)
        self._failed: FeedError | None = None
        # the fast path (jsonchunk): a top-level array's runs, lines by msgspec
        self._fast = fast
        self._runs: ArrayRuns | None = None
        self._line_at = 0       # document offset of the next block of lines

    @property
    def records(self) -> int:
        """Records read (rows and errors)."""
        return self._rows.records

    @property
    def on_fast_path(self) -> bool:
        """Whether the fast path reads the document: a top-level array or lines, none of
        it handed to ijson (so far)."""
        return self._runs is not None or (self._mode == "ndjson" and self._fast)

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
        out = Out()
        try:
            for i in range(0, len(data), PIECE):
                self._take(data[i:i + PIECE], out)
            if final and self._runs is not None:
                try:  # ijson reads what is held as it would have before the end
                    self._runs.finish()
                except Unsure as unsure:
                    self._hand_over(unsure, out)
            if final and vouched:
                self._finish(out)
            elif final:
                self._finish_cut(out)
        except FeedError as exc:
            self._failed = exc
            raise
        return out.batch()

    def _take(self, data: bytes, out: Out) -> None:
        if not self._mode:
            data = self._start(data)
            if not self._mode:
                return
        if not data:
            return
        if not self._rows.nul:  # rows are checked for NUL from then on
            head = self._last + data[:5]  # an escape may straddle two pieces
            self._rows.nul = b"\\u0000" in head or b"\\u0000" in data
            self._last = (head if len(data) < 5 else data)[-5:]
        bad = self._guard.check(data)
        if bad is not None:
            cut, reason = bad
            offset = self._offset + cut
            if self._runs is not None:  # an error before the byte is the one to report
                self._hand_over(self._runs.surrender(data[:cut]), out)
            else:
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
            if self._fast:
                self._runs = ArrayRuns(self._offset)
            else:
                self._main = Stream("item")
        elif first == "{":
            self._mode = "guess"
            self._main = Stream("", multiple_values=True)
            self._kept = []
        else:
            self._single()
        for stream in self._streams():
            stream.end = self._offset
        self._line_at = self._offset
        return body

    def _streams(self) -> list[Stream]:
        return [s for s in (self._main, self._probe, self._next) if s is not None]

    def _single(self) -> None:
        """One JSON value that is not an array of records: read to the end (for its
        errors) without building it, then refused for its shape."""
        self._mode = "single"
        # A prefix no document has (ijson joins keys with dots): nothing is built.
        self._main = Stream("\x00\x00not-a-path\x00\x00")

    def _dispatch(self, data: bytes, out: Out) -> None:
        if not data:
            return
        self._offset += len(data)
        mode = self._mode
        if mode in ("ndjson", "guess"):
            self._lines_in(data, out)
            return
        if self._runs is not None:
            guard = self._guard
            try:
                found = self._runs.feed(data, guard.depth, guard.in_string, guard.lowest)
            except Unsure as unsure:
                self._hand_over(unsure, out)
                return
            if found:
                self._rows.emit(found, out)
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
            elif self._probe is not None and jsonshape.look(self._probe, data, self._record):
                self._found, self._probe = True, None
        if values:
            self._rows.emit(values, out)

    def _finish_cut(self, out: Out) -> None:
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

    def _finish(self, out: Out) -> None:
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
        if (self._mode == "path" and not values and self._probe is not None
                and jsonshape.look(self._probe, b"", self._record, final=True)):
            self._found, self._probe = True, None
        if values:
            self._found = self._found or self._mode == "path"
            self._rows.emit(values, out)
        if self._mode == "single":
            raise JsonShapeError(jsonshape.document_message(self._first))
        if self._mode == "path" and not self._found:
            raise JsonShapeError(f"the document has no array at {self._record!r} "
                                 "(mapping.record)")

    def _hand_over(self, unsure: Unsure, out: Out) -> None:
        """The fast path's bytes from here on go to ijson (see jsonchunk)."""
        self._runs = None
        if unsure.values:
            self._rows.emit(unsure.values, out)
        stream = self._main = Stream("item")
        stream.end = unsure.offset
        values: list[Any] = []
        stream.send(unsure.data, values)
        if values[unsure.skip:]:
            self._rows.emit(values[unsure.skip:], out)

    # -- path mode: what is at mapping.record, the next page's link

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

    # -- newline-delimited JSON

    def _lines_in(self, data: bytes, out: Out) -> None:
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

    def _last_line(self, out: Out) -> None:
        block = b"".join(self._partial)
        self._partial, self._partial_size = [], 0
        self._block(block, out, final=True)

    def _block(self, block: bytes, out: Out, final: bool) -> None:
        stream = self._main
        if stream is None:
            return
        lines = block.split(b"\n")
        if not final:
            lines.pop()  # after the last \n
        at, self._line_at = self._line_at, self._line_at + len(block)
        if self._mode == "ndjson" and self._fast:
            found = decode_lines(lines)
            if found is not None:
                self._lines += len(lines)
                self._values += len(found)
                if found:
                    self._rows.emit(found, out)
                return
            # ijson from here on: says which line is wrong, and how
            self._fast = False
            stream = self._main = Stream("", multiple_values=True)
            stream.end = at
            if self._values:  # in the state after a value, as the document's parser is
                stream.end = at - 2
                stream.send(b"0\n", [])
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
            self._rows.emit(values, out)

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

