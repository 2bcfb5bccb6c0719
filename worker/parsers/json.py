"""JSON records from byte chunks, incrementally, in the CSV parser's batches.

The records are the elements of an array: the whole document (`[...]`), or the array at
`mapping.record` (a dotted path, `data.items`); or the lines of newline-delimited JSON.
ijson's C backend (yajl) does the parsing, driven through its async API by hand: the fastest
of its push interfaces, it parses each piece it is given in one C call. Two guards run
first, because yajl alone would let them through: nesting deeper than MAX_DEPTH (ijson's
prefixes grow with the square of the depth, 100,000 `[` take gigabytes) and the control
characters yajl takes for whitespace (\\v, \\f) or that cut its error messages (NUL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping
from decimal import Decimal
from itertools import accumulate, chain
from typing import Any

import ijson  # type: ignore[import-untyped]
import orjson

from worker.errors import FeedError
from worker.mapping import ATTRIBUTES, EXTRA_ATTRIBUTES
from worker.parsers.csv import CsvBatch

MAX_DEPTH = 512                    # nesting levels; deeper documents are refused
MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of newline-delimited JSON
PIECE = 1024 * 1024                # bytes parsed at a time: bounds the records held at once
RAW_CHARS = 200                    # of a rejected record's text
_PROBE = 16 * 1024                 # bytes at a time for the parser that looks for the array

Row = Callable[[Any], list[str]]


class _Out:
    """A batch being filled (CsvBatch's lines are a Sequence: ranges for the CSV parser)."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        self.errors: list[tuple[int, str, str]] = []

    def batch(self) -> CsvBatch:
        return CsvBatch(self.rows, self.lines, self.errors)


class JsonSyntaxError(FeedError):
    """The bytes are not JSON. `offset` is the byte (0-based) the parser stopped at; None
    when the parser could only tell the span (`start`-`end`) it was reading."""

    def __init__(self, reason: str, offset: int | None, start: int = 0, end: int = 0,
                 line: int | None = None) -> None:
        self.reason, self.offset = reason, offset
        where = f"at byte {offset}" if offset is not None else f"in bytes {start}-{end}"
        if line is not None:
            where += f" (line {line})"
        super().__init__(f"malformed JSON {where}: {reason}")


class JsonShapeError(FeedError):
    """Well-formed JSON, but not records where the mapping looks for them."""


# ---------------------------------------------------------------------------------------
# ijson driven by hand


class _Paused:
    """What the reader yields when it has nothing more to give until the next feed."""


_PAUSED = _Paused()


class _Wait:
    def __await__(self) -> Generator[_Paused, None, None]:
        yield _PAUSED


class _Reader:
    """The file ijson reads: each piece whole. Kept apart from _Stream so that ijson's C
    generator (which the garbage collector does not traverse) holds no cycle back to it."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.eof = False

    async def read(self, size: int) -> bytes:
        if size == 0:  # ijson asks once whether read() gives bytes or text
            return b""
        while self.data is None:
            if self.eof:
                return b""
            await _Wait()
        data, self.data = self.data, None
        return data


class _Stream:
    """One ijson parser fed bytes as they come: `items_async` over a reader that hands it
    each piece whole, its awaitable stepped with next() (a value arrives as StopIteration,
    a yielded _PAUSED means it wants the next piece)."""

    def __init__(self, prefix: str | None, multiple_values: bool = False) -> None:
        self._reader = reader = _Reader()
        self.start = 0   # document offset of the piece being parsed
        self.end = 0     # document offset after the bytes given so far
        if prefix is None:  # parse events, (prefix, event, value)
            gen = ijson.parse_async(reader, buf_size=PIECE, multiple_values=multiple_values)
        else:
            gen = ijson.items_async(reader, prefix, buf_size=PIECE,
                                    multiple_values=multiple_values)
        self._next = gen.__anext__
        self._step = self._next().__await__()
        self.done = False

    def send(self, data: bytes, out: list[Any]) -> None:
        """Parse `data` (the next bytes of the document); the values found go to `out`."""
        if not data or self.done:
            return
        self.start, self.end = self.end, self.end + len(data)
        self._reader.data = data
        self._run(out, data)

    def close(self, out: list[Any]) -> None:
        if self.done:
            return
        self.start = self.end
        self._reader.eof = True
        self._run(out, b"")

    def _run(self, out: list[Any], data: bytes) -> None:
        step, append, again = self._step, out.append, self._next
        while True:
            try:
                yielded = next(step)
            except StopIteration as value:
                append(value.value)
                # The C backend's awaitable is the same object each time; the others' not.
                step = self._step = again().__await__()
                continue
            except StopAsyncIteration:
                self.done = True
                return
            except Exception as exc:  # yajl's errors, bad escapes, absurd numbers
                self.done = True
                raise self._error(exc, data) from None
            if yielded is _PAUSED:
                return

    def _error(self, exc: Exception, data: bytes) -> JsonSyntaxError:
        if isinstance(exc, ijson.JSONError) and exc.args:
            reason, offset = _yajl_position(exc.args[0], data)
            if not data:  # at the end of the document
                offset = 0
            if offset is not None:
                return JsonSyntaxError(reason, self.start + offset)
            return JsonSyntaxError(reason, None, self.start, self.end)
        if isinstance(exc, UnicodeDecodeError):
            reason = "a string that is not UTF-8 (or a \\u escape of a lone surrogate)"
        elif isinstance(exc, ArithmeticError):
            reason = "a number out of range"
        else:
            reason = f"{type(exc).__name__}: {exc}"[:200]
        return JsonSyntaxError(reason, None, self.start, self.end)


_NL_TO_SPACE = bytes.maketrans(b"\r\n", b"  ")


def _yajl_position(message: str | bytes, data: bytes) -> tuple[str, int | None]:
    """yajl's reason, and its offset in `data` read back from the context it prints: the
    30 bytes either side of the offset (line breaks as spaces), padded so the offset falls
    at column 41 of the line, with the arrow under it."""
    raw = message.encode("utf-8", "surrogateescape") if isinstance(message, str) else message
    head, _, rest = bytes(raw).partition(b"\n")
    reason = head.decode("utf-8", "replace").strip().rstrip(".")
    for kind in ("lexical error: ", "parse error: "):
        reason = reason.removeprefix(kind)
    snippet, sep, arrow = rest.partition(b"\n")
    if not sep or b"(right here)" not in arrow:
        return reason, None
    n = len(data)
    after = len(snippet) - 40  # min(30, bytes after the offset)
    if 0 <= after < 30:
        return reason, n - after
    if after != 30:
        return reason, None
    flat = data.translate(_NL_TO_SPACE)
    for offset in range(min(30, n - 29)):
        if snippet == b" " * (40 - offset) + flat[:offset + 30]:
            return reason, offset
    found = flat.find(snippet[10:]) if snippet.startswith(b" " * 10) else -1
    return reason, (found + 30 if found >= 0 else None)


# ---------------------------------------------------------------------------------------
# guards: what yajl would let through


_CONTROL = re.compile(rb"[\x00\x0b\x0c]")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = [0] * 256
for _c in b"[{":
    _STEP[_c] = 1
for _c in b"]}":
    _STEP[_c] = -1


class _Guard:
    """Finds, in document order, the first byte yajl must not see: a NUL, \\v or \\f (never
    valid in JSON: not whitespace, and raw in strings), or the bracket that nests deeper
    than MAX_DEPTH. Strings are skipped with C-speed passes: escapes dropped, everything but
    quotes and brackets dropped, then every other run between quotes."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last piece ended inside a string, on a backslash

    def check(self, data: bytes) -> tuple[int, str] | None:
        bad = None
        if b"\x00" in data or b"\x0b" in data or b"\x0c" in data:
            m = _CONTROL.search(data)
            if m is not None:
                bad = (m.start(), f"character 0x{data[m.start()]:02x} is not allowed in JSON")
                data = data[:m.start()]
        state = (self.depth, self.in_string, self.escaped)
        if self._fast(data) > MAX_DEPTH:
            self.depth, self.in_string, self.escaped = state
            return self._slow(data), f"nested more than {MAX_DEPTH} levels deep"
        return bad

    def _fast(self, data: bytes) -> int:
        """Runs over `data`, returning the deepest level reached."""
        if self.escaped and data:
            data = data[1:]
            self.escaped = False
        if b"\\" in data:
            data = _ESCAPE.sub(b"", data)
            if data.endswith(b"\\"):  # only a lone trailing backslash survives
                data = data[:-1]
                self.escaped = True
        parts = data.translate(None, _NOT_STRUCTURE).split(b'"')
        outside = parts[1::2] if self.in_string else parts[::2]
        self.in_string ^= bool((len(parts) - 1) & 1)
        brackets = b"".join(outside)
        if not brackets:
            return self.depth
        levels = list(accumulate(map(_STEP.__getitem__, brackets), initial=self.depth))
        self.depth = max(levels[-1], 0)
        return max(levels)

    def _slow(self, data: bytes) -> int:
        """The offset in `data` of the bracket that goes past MAX_DEPTH."""
        depth, in_string, escaped = self.depth, self.in_string, self.escaped
        for i, c in enumerate(data):
            if in_string:
                if escaped:
                    escaped = False
                elif c == 0x5C:  # backslash
                    escaped = True
                elif c == 0x22:
                    in_string = False
            elif c == 0x22:
                in_string = True
            elif c in b"[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return i
            elif c in b"]}":
                depth = max(depth - 1, 0)
        return len(data)  # pragma: no cover - the fast pass said it is in there


# ---------------------------------------------------------------------------------------
# values


def _decimal(d: Decimal) -> str:
    """A JSON number as written, without exponent noise (1E+2 -> 100); absurd exponents
    stay in E notation rather than become thousands of zeros."""
    text = str(d)
    if "E" not in text:
        return text
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and -40 <= exponent <= 40:
        return format(d, "f")
    return text


def _fragment(v: Any) -> orjson.Fragment:
    if isinstance(v, Decimal):
        return orjson.Fragment(_decimal(v))
    raise TypeError(f"{type(v).__name__} is not JSON")


def _dumps(v: Any) -> str:
    return orjson.dumps(v, default=_fragment).decode()


# A value's text by its type (ijson gives str, int, Decimal, bool, None, dict, list):
# strings as they are, numbers as written, true/false, null as blank, objects and arrays
# as compact JSON. Looked up by class, so the common types cost no Python-level call.
_TO_TEXT: dict[type, Callable[[Any], str]] = {
    str: str, int: int.__repr__, Decimal: _decimal, type(None): "".format,
    bool: {True: "true", False: "false"}.__getitem__, dict: _dumps, list: _dumps,
}


def _text(v: Any) -> str:
    return _TO_TEXT.get(v.__class__, _dumps)(v)


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if v is None:
        return "null"
    return "a number"


def _raw(v: Any) -> str:
    try:
        text = orjson.dumps(v, default=_fragment).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(v)
    return text if len(text) <= RAW_CHARS else text[:RAW_CHARS - 3] + "..."


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if value.__class__ is dict:
            value = value.get(key)
        elif value.__class__ is list and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def _row_maker(paths: list[tuple[str, ...]]) -> Row:
    """record -> its texts, one a path: the first steps in one C-level pass of dict.get,
    the deeper steps (few) after."""
    keys = [p[0] for p in paths]
    deeper = [(i, p[1:]) for i, p in enumerate(paths) if len(p) > 1]
    convert = _TO_TEXT

    if not deeper:
        def flat(record: Any) -> list[str]:
            return [v if v.__class__ is str else convert[v.__class__](v)
                    for v in map(record.get, keys)]

        return flat

    def nested(record: Any) -> list[str]:
        values = list(map(record.get, keys))
        for i, rest in deeper:
            value = values[i]
            if value.__class__ is dict and len(rest) == 1:
                values[i] = value.get(rest[0])
            else:
                values[i] = _dig(value, rest)
        return [v if v.__class__ is str else convert[v.__class__](v) for v in values]

    return nested


def _path(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        raise FeedError(f"{what} must be a dotted path such as \"stock.available\"")
    parts = tuple(value.strip().split("."))
    if "" in parts:
        raise FeedError(f"{what} {value!r} is not a dotted path (an empty step)")
    return parts


def _fields(mapping: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, ...]]]:
    fields = mapping.get("fields")
    if not fields:
        names = list(ATTRIBUTES)
        return names, [(n,) for n in names]
    if not isinstance(fields, dict):
        raise FeedError("mapping.fields must be an object")
    known = {*ATTRIBUTES, *EXTRA_ATTRIBUTES}
    header, paths = [], []
    for attr, path in fields.items():
        if attr not in known:
            raise FeedError(f"mapping.fields names an unknown attribute {attr!r}")
        header.append(attr)
        paths.append(_path(path, f"mapping.fields.{attr}"))
    return header, paths


# ---------------------------------------------------------------------------------------
# the parser


_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


class JsonRecords:
    """Bytes in, records out: `feed(data)` as they arrive, then `close()`. Each batch's rows
    hold one text per `header` attribute ("" where the record lacks the path); `lines` are
    record numbers (1-based); a record that is not an object lands in `errors` and the rest
    go on. Malformed JSON raises JsonSyntaxError (a FeedError) naming the byte; JSON without
    records where the mapping says raises JsonShapeError."""

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self.header, paths = _fields(mapping)
        self._row = _row_maker(paths)
        record = mapping.get("record") or ""
        self._record = ".".join(_path(record, "mapping.record")) if record else ""
        fmt = (mapping.get("format") or "").lower()
        if fmt not in ("", "json", "ndjson", "jsonl"):
            raise FeedError(f"mapping.format {mapping.get('format')!r}: use \"json\" or "
                            "\"ndjson\"")
        self._ndjson = fmt in ("ndjson", "jsonl")
        if self._ndjson and self._record:
            raise FeedError("mapping.record does not apply to newline-delimited JSON")
        nxt = mapping.get("next")
        self._next_path = ".".join(_path(nxt, "mapping.next")) if nxt else ""
        self.next_url: str | None = None
        self.records = 0        # records read (rows and errors)
        self.details: dict[str, Any] = {}
        self._mode = ""         # "", array, path, ndjson, guess (maybe ndjson), single
        self._head = b""        # the first bytes, until they are known not to be a BOM
        self._bom_checked = False
        self._offset = 0        # document bytes taken so far
        self._guard = _Guard()
        self._main: _Stream | None = None
        self._probe: _Stream | None = None   # path mode: finds what is at mapping.record
        self._found = False                  # ... an array
        self._next: _Stream | None = None
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

    def feed(self, data: bytes) -> CsvBatch:
        return self._guarded(data, final=False)

    def close(self) -> CsvBatch:
        return self._guarded(b"", final=True)

    # -- driving

    def _guarded(self, data: bytes, final: bool) -> CsvBatch:
        if self._failed is not None:
            raise self._failed
        out = _Out()
        try:
            for i in range(0, len(data), PIECE):
                self._take(data[i:i + PIECE], out)
            if final:
                self._finish(out)
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
            self._main = _Stream(f"{self._record}.item")
            self._probe = _Stream(None)
            if self._next_path:
                self._next = _Stream(self._next_path)
        elif self._ndjson:
            self._mode = "ndjson"
            self._main = _Stream("", multiple_values=True)
        elif first == "[":
            self._mode = "array"
            self._main = _Stream("item")
        elif first == "{":
            self._mode = "guess"
            self._main = _Stream("", multiple_values=True)
            self._kept = []
        else:
            self._single()
        for stream in self._streams():
            stream.end = self._offset
        return body

    def _streams(self) -> list[_Stream]:
        return [s for s in (self._main, self._probe, self._next) if s is not None]

    def _single(self) -> None:
        """One JSON value that is not an array of records: read to the end (for its
        errors) without building it, then refused for its shape."""
        self._mode = "single"
        # A prefix no document has (ijson joins keys with dots): nothing is built.
        self._main = _Stream("\x00\x00not-a-path\x00\x00")

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

    def _finish(self, out: _Out) -> None:
        if not self._mode:
            raise JsonSyntaxError("the document is empty" if not self._head
                                  else "no JSON value", self._offset + len(self._head))
        if self._mode in ("ndjson", "guess"):
            self._last_line(out)
            if self._mode == "guess":  # never a second value: one object, not lines
                self._mode = "single"
                raise JsonShapeError(self._shape_message())
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
            raise JsonShapeError(self._shape_message())
        if self._mode == "path" and not self._found:
            raise JsonShapeError(f"the document has no array at {self._record!r} "
                                 "(mapping.record)")

    def _shape_message(self) -> str:
        kinds = {"{": "an object", "[": "an array", '"': "a string", "t": "a boolean",
                 "f": "a boolean", "n": "null"}
        kind = kinds.get(self._first, "a number")
        hint = (": set mapping.record to the dotted path of the array of records"
                if self._first == "{" else "")
        return f"the document is {kind}, not an array of records{hint}"

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
        for prefix, event, _ in events:
            if prefix == record and event != "map_key":
                if event != "start_array":
                    kind = {"start_map": "an object", "string": "a string",
                            "number": "a number", "boolean": "a boolean",
                            "null": "null"}.get(event, event)
                    raise JsonShapeError(f"{record!r} (mapping.record) is {kind}, not an "
                                         "array of records")
                self._found = True
                self._probe = None
                return True
        return False

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
            self.next_url = None if value is None else _text(value) or None

    # -- records

    def _emit(self, values: list[Any], out: _Out) -> None:
        base = self.records
        self.records += len(values)
        row = self._row
        rows, lines = out.rows, out.lines
        try:
            if all(v.__class__ is dict for v in values):
                new = list(map(row, values))
                if not self._nul or "\x00" not in "".join(chain.from_iterable(new)):
                    rows += new
                    lines += range(base + 1, base + 1 + len(values))
                    return
        except (TypeError, ValueError, KeyError, orjson.JSONEncodeError):
            pass  # one of them is bad: record by record, below
        for i, value in enumerate(values, base + 1):
            self._one(i, value, out)

    def _one(self, n: int, value: Any, out: _Out) -> None:
        if not isinstance(value, dict):
            out.errors.append((n, _raw(value), f"record {n} is {_kind(value)}, not an object"))
            return
        try:
            row = self._row(value)
        except (TypeError, ValueError, KeyError, orjson.JSONEncodeError) as exc:
            out.errors.append((n, _raw(value), f"record {n} cannot be read: {exc}"))
            return
        if "\x00" in "".join(row):
            out.errors.append((n, _raw(value), "a value holds a NUL character (\\u0000)"))
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
            raise self._bad_line(lines, stream.start)
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

    def _bad_line(self, lines: list[bytes], start: int) -> JsonSyntaxError:
        """The first line of a block that does not hold exactly one value."""
        offset = start
        for i, line in enumerate(lines, self._lines + 1):
            if line.strip():
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    reason = ("more than one JSON value on a line"
                              if "after document" in str(exc) else
                              "a line that is not a whole JSON value")
                    at = len(line.decode("utf-8", "replace")[:exc.pos].encode())
                    return JsonSyntaxError(reason, offset + at, line=i)
            offset += len(line) + 1
        return JsonSyntaxError("a line that does not hold one JSON value", None, start,
                               offset, line=self._lines + 1)

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

