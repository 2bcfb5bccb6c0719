"""ijson (yajl) driven by hand, and the guards that run before it.

The push interface: `items_async`/`parse_async` over a reader that hands each piece whole,
their awaitables stepped with next(). The guards refuse what yajl alone would let through:
nesting deeper than MAX_DEPTH (ijson's prefixes grow with the square of the depth) and the
control characters yajl takes for whitespace (\\v, \\f) or that cut its messages (NUL).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from itertools import accumulate
from typing import Any

import ijson  # type: ignore[import-untyped]

from worker.errors import FeedError

MAX_DEPTH = 512                    # nesting levels; deeper documents are refused
PIECE = 1024 * 1024                # bytes parsed at a time: bounds the records held at once


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


# ---------------------------------------------------------------------------------------
# ijson driven by hand


class _Paused:
    """What the reader yields when it has nothing more to give until the next feed."""


_PAUSED = _Paused()


class _Wait:
    def __await__(self) -> Generator[_Paused, None, None]:
        yield _PAUSED


class _Reader:
    """The file ijson reads: each piece whole. Kept apart from Stream so that ijson's C
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


class Stream:
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
_ESCAPE = re.compile(rb'\\[\\"]')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = [0] * 256
for _c in b"[{":
    _STEP[_c] = 1
for _c in b"]}":
    _STEP[_c] = -1


class Guard:
    """Finds, in document order, the first byte yajl must not see: a NUL, \\v or \\f (never
    valid in JSON: not whitespace, and raw in strings), or the bracket that nests deeper
    than MAX_DEPTH. Strings are skipped with C-speed passes: escapes dropped, everything but
    quotes and brackets dropped, then every other run between quotes."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last piece ended inside a string, on a backslash
        self.lowest = 0       # the shallowest level the last piece reached (its start too)

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
        # Only a backslash before a quote can hide one: escaped backslashes and quotes go
        # (a run of backslashes leaves one, when odd, or none before the next character).
        if b'\\"' in data:
            data = _ESCAPE.sub(b"", data)
        if data.endswith(b"\\"):  # an odd run escapes the next piece's first byte
            run = len(data) - len(data.rstrip(b"\\"))
            data = data[:-run]
            self.escaped = bool(run & 1)
        # Two quotes side by side (an empty string, the end of one and the start of the
        # next) go too: that leaves every bracket as much in or out of a string as it was.
        parts = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"").split(b'"')
        outside = parts[1::2] if self.in_string else parts[::2]
        self.in_string ^= bool((len(parts) - 1) & 1)
        brackets = b"".join(outside)
        if not brackets:
            self.lowest = self.depth
            return self.depth
        levels = list(accumulate(map(_STEP.__getitem__, brackets), initial=self.depth))
        self.depth = max(levels[-1], 0)
        self.lowest = min(levels)
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
