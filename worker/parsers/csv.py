"""CSV records from text chunks, incrementally, with the line each record starts on.

The standard library's C reader does the parsing. It wants whole lines and keeps no state
between calls, so each chunk is cut at its last line break, and a record that runs past
the end of a chunk (a quoted field with newlines in it) is parsed again, whole, once the
next chunk has arrived.

Field size: a record with a field longer than `max_field_chars` is rejected, whole (the
reader may read a field up to 8 times the cap, so that a long quoted field running over
lines is still read to its end and the records after it stay in step). A field running
past that (an unclosed quote) is unreadable: rejected with the lines read so far. A line
with no line break within MAX_LINE_CHARS (or 8 times the cap, if more) fails the run:
there is nowhere to resume from.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from itertools import chain

from worker.errors import FeedError
from worker.model import DEFAULT_MAX_FIELD_CHARS
from worker.parsers import RecordBatch, field_cap_reason

# Characters str.splitlines() breaks on that are not line breaks in CSV: each looked for
# with `in` (a memchr over the text, and none at all for a character above the text's
# widest: 3 to 4 times faster than one regular expression's character class).
_EXOTIC_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
MAX_LINE_CHARS = 16 * 1024 * 1024  # a "line" longer than this is not a CSV feed
_READ_AHEAD = 8  # times the field cap: how far a field is read to find its end
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+")


class _NeedMore(Exception):
    """The reader asked for a line past the end of the current chunk."""


def _need_more() -> Iterator[str]:
    raise _NeedMore
    yield ""  # pragma: no cover - makes this a generator


class CsvParser:
    def __init__(self, delimiter: str = ",", quotechar: str = '"',
                 max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> None:
        self.delimiter = self._delimiter = delimiter
        self._quotechar = quotechar
        self.max_field_chars = max_field_chars
        self._read_limit = _READ_AHEAD * max_field_chars  # the C reader's, on the slow path
        self.max_line_chars = max(MAX_LINE_CHARS, self._read_limit)
        self.nul_lines = 0        # lines rejected for a NUL byte
        self._tail: list[str] = []  # text after the last line break seen, in pieces
        self._tail_chars = 0
        self._pending: list[str] = []  # lines of a record cut by the end of a chunk
        self._line = 0            # lines handed to the reader before the pending ones
        self.records = 0
        self.open_quote = False   # after the final feed: the text ended in a quoted field

    def feed(self, text: str, final: bool = False) -> RecordBatch:
        if not final and "\n" not in text:
            # No line ends here: keep the piece (joining on every chunk would be quadratic).
            self._tail.append(text)
            self._tail_chars += len(text)
            if self._tail_chars > self.max_line_chars:
                raise FeedError(f"line {self._line + len(self._pending) + 1} is longer than "
                                f"{self.max_line_chars} characters")
            return RecordBatch()
        data = "".join(self._tail) + text if self._tail else text
        self._tail = []
        self._tail_chars = 0
        if any(c in data for c in _EXOTIC_BREAKS):
            lines = _LINE.findall(data)
        else:
            lines = data.splitlines(keepends=True)
        if not final and lines:
            last = lines[-1]
            # A line without its break, or a \r that a \n may follow in the next chunk.
            if not last.endswith("\n"):
                self._tail = [lines.pop()]
                self._tail_chars = len(self._tail[0])
        if self._pending:
            lines = self._pending + lines
            self._pending = []
        nul_errors: list[tuple[int, str, str]] = []
        if "\x00" in data:
            lines = self._drop_nul_lines(lines, nul_errors)
        batch = self._parse(lines, final)
        if nul_errors:
            batch.errors = sorted(batch.errors + nul_errors)
        return batch

    def _drop_nul_lines(self, lines: list[str],
                        errors: list[tuple[int, str, str]]) -> list[str]:
        """Postgres text cannot hold NUL: a line with one is rejected (kept as a blank line,
        so the line numbers of the rest stay true)."""
        out = []
        for i, line in enumerate(lines):
            if "\x00" in line:
                self.nul_lines += 1
                errors.append((self._line + i + 1, line.rstrip("\r\n").replace("\x00", "\\0"),
                               "the line contains a NUL byte"))
                line = "\n"
            out.append(line)
        return out

    def _parse(self, lines: list[str], final: bool) -> RecordBatch:
        # The C reader's field limit is the csv module's (one for the process): set for
        # this call only. The fast path fails on any field over the cap; the slow path
        # reads further, to reject the whole record (see the module doc).
        before = csv.field_size_limit(self.max_field_chars)
        try:
            fast = self._parse_fast(lines)
            if fast is not None:
                return fast
            csv.field_size_limit(self._read_limit)
            return self._parse_slow(lines, final)
        finally:
            csv.field_size_limit(before)

    def _parse_fast(self, lines: list[str]) -> RecordBatch | None:
        """The whole chunk in one C call, when every record is one line and well quoted."""
        reader = csv.reader(iter(lines), delimiter=self._delimiter, quotechar=self._quotechar,
                            doublequote=True, strict=True)
        try:
            rows = list(reader)
        except csv.Error:
            return None  # a record cut by the chunk's end, or malformed quoting
        if reader.line_num != len(rows):
            return None  # quoted line breaks: records span lines
        base = self._line + 1
        self._line += len(rows)
        out = RecordBatch(rows, range(base, base + len(rows)))
        if not all(rows):  # blank lines
            keep = [i for i, r in enumerate(rows) if r]
            out.rows = [rows[i] for i in keep]
            out.lines = [base + i for i in keep]
        self.records += len(out.rows)
        return out

    def _parse_slow(self, lines: list[str], final: bool) -> RecordBatch:
        """Record by record, with line numbers, resuming records cut by the chunk's end."""
        out = RecordBatch()
        rows, starts = out.rows, []
        source = iter(lines) if final else chain(lines, _need_more())
        reader = csv.reader(source, delimiter=self._delimiter, quotechar=self._quotechar,
                            doublequote=True, strict=False)
        base = self._line
        cap = self.max_field_chars
        done = 0  # lines consumed by complete records (or skipped as unreadable)
        last = 0  # where the last record read starts
        while True:
            try:
                for row in reader:
                    n = reader.line_num
                    last = done
                    if row:
                        longest = max(map(len, row))
                        if longest > cap:
                            field_no = [len(v) for v in row].index(longest) + 1
                            out.errors.append((base + done + 1, "".join(lines[done:n]),
                                               field_cap_reason(f"field {field_no}",
                                                                longest, cap)))
                        else:
                            rows.append(row)
                            starts.append(base + done + 1)
                    done = n
                break
            except _NeedMore:
                self._pending = lines[done:]
                break
            except csv.Error as exc:
                n = reader.line_num
                raw = "".join(lines[done:n])
                reason = f"unreadable CSV: {exc}"
                if "field limit" in str(exc):
                    reason = (f"unreadable CSV: a field runs past {self._read_limit} "
                              "characters (8 times FEED_WORKER_MAX_FIELD_CHARS; an unclosed "
                              "quote?)")
                out.errors.append((base + done + 1, raw, reason))
                last, done = done, n
        if final:
            # The reader (not strict) takes a quote left open at the end as closed there.
            self.open_quote = _ends_quoted("".join(lines[last:done]), self._delimiter,
                                           self._quotechar)
        out.lines = starts
        self._line = base + done
        self.records += len(rows)
        return out


def _ends_quoted(text: str, delimiter: str, quotechar: str) -> bool:
    """Whether `text`, read from the start of a record, ends inside a quoted field (as the
    csv module reads it: doubled quotes, a quote that opens a field only at its start)."""
    if quotechar not in text:
        return False
    start, field, quoted, quote = range(4)  # quote: a quote seen in a quoted field
    state = start
    for c in text:
        if state == quoted:
            if c == quotechar:
                state = quote
        elif state == quote and c == quotechar:
            state = quoted
        elif c == delimiter or c in "\r\n":
            state = start
        elif state == start and c == quotechar:
            state = quoted
        else:
            state = field
    return state == quoted
