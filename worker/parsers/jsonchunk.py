"""The fast path of JSON records: whole records cut out of the byte stream and decoded in
runs by msgspec, where ijson would build them event by event.

Two shapes take it: the elements of a top-level array (ArrayRuns: the run of elements up to
the last comma between two of them, strings and escapes respected) and the lines of
newline-delimited JSON (LineRuns). Numbers stay as written: integers as Python ints of
any size, every other number as the Decimal of its text (`1e2` is Decimal('1E+2'), never
100.0), as ijson gives them. Whatever this path is not sure of (msgspec refuses a run, a
run holds no element, bytes after the closing bracket, a record longer than RUN_CAP) is
handed back as Unsure, with the bytes still to read: the caller parses them with ijson from
there on, which reads, refuses and places errors exactly as the whole document through
ijson would.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec

RUN_CAP = 16 * 1024 * 1024   # bytes held without a whole record: past it, ijson reads on
_WINDOW = 4096               # bytes looked back at first for the last cut
_STRUCTURE = re.compile(rb'[",\[\]{}]')
_WHITESPACE = b" \t\r\n"

_DECODER = msgspec.json.Decoder(float_hook=Decimal)
decode = _DECODER.decode


class Unsure(Exception):
    """The fast path cannot vouch for what comes next: ijson reads on from `data`, whose
    first byte is at document offset `offset`. The first bytes can be a prefix that puts
    ijson in the state the document is in there (the array opened and a value taken, or
    closed); `skip` says how many values the prefix gives. `values`: the elements decoded
    before, to be taken first."""

    def __init__(self, data: bytes, offset: int, skip: int, values: list[Any]) -> None:
        super().__init__("handed over to ijson")
        self.data, self.offset, self.skip, self.values = data, offset, skip, values


COMMA, CLOSE, WRONG = 0, 1, 2  # what last_cut found


def last_cut(buf: bytearray, lo: int, depth: int, in_string: bool) -> tuple[int, int] | None:
    """Walks back from the end of `buf` (its state there: nesting `depth`, `in_string`) to
    the last byte at or after `lo` that ends elements of the top-level array: a comma at
    depth 1 (COMMA), or the array's closing bracket (CLOSE). WRONG: the bytes cannot be
    JSON (a `}` closing the array, more brackets opened than the state says). None when
    there is none."""
    end = len(buf)
    window = _WINDOW
    while True:
        start = max(lo, end - window)
        found = _walk(buf, start, end, depth, in_string)
        if found is not None or start == lo:
            return found
        window *= 16


def _walk(buf: bytearray, start: int, end: int, depth: int,
          in_string: bool) -> tuple[int, int] | None:
    """last_cut over buf[start:end]; None also when the window ran out."""
    rev = bytes(buf[start:end])[::-1]
    n = len(rev)
    i = 0
    search = _STRUCTURE.search
    while i < n:
        if in_string:
            j = rev.find(b'"', i)
            if j < 0:
                return None
            q = end - 1 - j
            k = q - 1
            while k >= 0 and buf[k] == 0x5C:  # the backslashes before the quote
                k -= 1
            in_string = bool((q - 1 - k) & 1)  # an odd number escapes it
            i = j + 1
            continue
        m = search(rev, i)
        if m is None:
            return None
        j = m.start()
        c = rev[j]
        if c == 0x22:
            in_string = True
        elif c == 0x2C:
            if depth == 1:
                return end - 1 - j, COMMA
        elif c == 0x5D or c == 0x7D:
            if depth == 0:
                return end - 1 - j, CLOSE if c == 0x5D else WRONG
            depth += 1
        else:
            depth -= 1
            if depth < 1:
                return end - 1 - j, WRONG
        i = j + 1
    return None


class ArrayRuns:
    """The elements of a top-level array, decoded a run at a time. `feed` takes the next
    bytes (the first ones start at the `[`) with the guard's state after them (depth,
    in_string, the lowest depth they reached) and returns the elements whole in them."""

    def __init__(self, offset: int) -> None:
        self._buf = bytearray()
        self._at = offset      # document offset of _buf[0]: the `[`, or the comma before
        self._taken = False    # elements were taken: _buf[0] stands for a comma
        self._closed = False   # the closing bracket was read: only whitespace may follow

    def feed(self, data: bytes, depth: int, in_string: bool, lowest: int) -> list[Any]:
        buf = self._buf
        if self._closed:
            if data.strip(_WHITESPACE):
                buf += data
                raise self._unsure()
            self._at += len(data)
            return []
        lo = max(len(buf), 1)  # the first byte of all is the `[`
        buf += data
        found = last_cut(buf, lo, depth, in_string) if lowest <= 1 else None
        if found is None:
            if len(buf) > RUN_CAP:
                raise self._unsure()
            return []
        cut, kind = found
        if kind == WRONG:
            raise self._unsure()
        closing = kind == CLOSE
        values = self._decode(cut)
        if not values and (self._taken or not closing):
            raise self._unsure()  # `[,` `,,` `,]`: ijson names the byte
        self._taken = True
        if not closing:
            self._at += cut
            del buf[1:cut + 1]
            return values
        self._closed = True
        self._at += cut + 1
        del buf[:cut + 1]
        if buf.strip(_WHITESPACE):
            raise self._unsure(values)
        self._at += len(buf)
        buf.clear()
        return values

    def surrender(self, data: bytes) -> Unsure:
        """The guard refused a byte after `data`: ijson reads what is held and `data`, so
        that an error before that byte is the one reported."""
        self._buf += data
        return self._unsure()

    def finish(self) -> None:
        """At the end of the document: an array not closed is ijson's to report."""
        if not self._closed:
            raise self._unsure()

    def _decode(self, cut: int) -> list[Any]:
        buf = self._buf
        sep = buf[cut]
        buf[0], buf[cut] = 0x5B, 0x5D  # [ the run ]
        try:
            with memoryview(buf) as view:
                values: list[Any] = decode(view[:cut + 1])
        except (msgspec.DecodeError, ArithmeticError, RecursionError):
            buf[cut] = sep
            raise self._unsure() from None
        buf[cut] = sep
        return values

    def _unsure(self, values: list[Any] | None = None) -> Unsure:
        """What ijson needs to read on as if it had read everything before."""
        held = bytes(self._buf)
        self._buf = bytearray()
        if self._closed:  # `[]` stands for the array read
            return Unsure(b"[]" + held, self._at - 2, 0, values or [])
        if not self._taken:
            return Unsure(held, self._at, 0, values or [])
        return Unsure(b"[0," + held[1:], self._at - 2, 1, values or [])


def decode_lines(lines: list[bytes]) -> list[Any] | None:
    """The values of whole lines of newline-delimited JSON, one a line that is not blank;
    None when a line is not one value (ijson then says which, and why)."""
    try:
        return list(map(decode, filter(bytes.strip, lines)))
    except (msgspec.DecodeError, ArithmeticError, RecursionError):
        return None
