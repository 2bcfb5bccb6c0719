"""XML records from byte chunks, incrementally, in RecordBatches (as the CSV parser).

libxml2 (lxml's pull parser) builds the tree as bytes arrive and reports each element that
ends with the record's tag; one whose path from the root is `mapping.record` is a record.
Its fields (`mapping.fields`, XPaths relative to it: see xmlpaths.py) are read, then it is
cleared and the elements before it (its earlier siblings, and those of its ancestors) are
deleted, so the tree never holds more than the record being read: memory stays flat.

Feeds are untrusted: entities are never expanded (resolve_entities=False), nothing is
fetched (no_network, no DTD loading), libxml2's size and depth limits stay on
(huge_tree=False), and a document whose DTD declares entities is refused: its bytes are
searched for `<!ENTITY` before libxml2 sees them, and its DTD checked at the first record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from lxml import etree

from worker.errors import FeedError
from worker.model import DEFAULT_MAX_FIELD_CHARS, FeedMapping
from worker.parsers import CutShort, RecordBatch, field_cap_reason, xmlpaths

PIECE = 1024 * 1024  # bytes given to libxml2 at a time: bounds the records held at once
RAW_CHARS = 200      # of a rejected record's text
_ENTITY = b"<!ENTITY"
_DECLARES = ("the document's DTD declares entities (<!ENTITY ...>): refused, feeds may not "
             "(entities are never expanded)")

_WHERE = re.compile(r", line \d+, column \d+$")

Element = etree._Element


class XmlSyntaxError(FeedError):
    """The bytes are not well-formed XML (or not XML a feed may use)."""

    def __init__(self, reason: str, line: int | None, column: int | None) -> None:
        self.reason, self.line, self.column = reason, line, column
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"malformed XML{where}: {reason}")


class XmlRecords:
    """Bytes in, records out: `feed(data)` as they arrive, then `close()`. Each batch's rows
    hold one text per `header` attribute ("" where the XPath selects nothing); `lines` are
    record numbers (1-based); a record whose field cannot be read, or is longer than
    `max_field_chars`, lands in `errors` and the rest go on. Malformed XML raises
    XmlSyntaxError (a FeedError) naming line and column."""

    def __init__(self, mapping: FeedMapping,
                 max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> None:
        self.max_field_chars = max_field_chars
        names = xmlpaths.Names(mapping.namespaces)
        self._path = xmlpaths.record_path(mapping.record, names)
        self._fields = xmlpaths.Fields(mapping.fields, names)
        self.header = self._fields.header
        self.next_url: str | None = None
        self.records = 0
        self.details: dict[str, Any] = {}
        # Not collect_ids=False: with it, libxml2 reads the external DTD subset (a local
        # file named in <!DOCTYPE ... SYSTEM "file:///...">) whatever load_dtd says.
        self._parser = etree.XMLPullParser(
            events=("end",), tag=self._path[-1],
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
            remove_comments=True, remove_pis=True)
        self._ancestors = self._path[-2::-1]  # parent's tag first, up to the root's
        self._parent: Element | None = None   # the last parent that was checked
        self._checked = False                 # the DTD, at the first record
        self._tail = b""                      # end of the last piece, for `<!ENTITY`
        self._seen = 0                        # bytes before the first record
        self._lines = 0                       # ... their line breaks
        self._last_break = -1                 # ... offset of the last one
        self._failed: FeedError | None = None

    def feed(self, data: bytes) -> RecordBatch:
        return self._guarded(data, final=False)

    def close(self, vouched: bool = True) -> RecordBatch:
        """The last records. Not `vouched` (the transport could not tell a cut download from
        a whole one), a document that ends before its root element is closed raises
        CutShort rather than XmlSyntaxError."""
        return self._guarded(b"", final=True, vouched=vouched)

    def _guarded(self, data: bytes, final: bool, vouched: bool = True) -> RecordBatch:
        if self._failed is not None:
            raise self._failed
        rows: list[list[str]] = []
        lines: list[int] = []
        errors: list[tuple[int, str, str]] = []
        out = (rows, lines, errors)
        try:
            for i in range(0, len(data), PIECE):
                self._feed(data[i:i + PIECE], out)
            if final:
                self._close(out, vouched)
        except FeedError as exc:
            self._failed = exc
            raise
        return RecordBatch(rows, lines, errors)

    def _feed(self, data: bytes, out: tuple[list[list[str]], list[int], list[Any]]) -> None:
        if not self._checked:
            self._look_for_entities(data)
        parser = self._parser
        try:
            parser.feed(data)
        except etree.XMLSyntaxError as exc:
            raise _syntax(exc) from None
        log = parser.feed_error_log  # errors libxml2 logged without stopping lxml
        if log:
            _raise_logged(log)
        self._records(parser.read_events(), out)

    def _close(self, out: tuple[list[list[str]], list[int], list[Any]], vouched: bool) -> None:
        parser = self._parser
        try:
            parser.close()
        except etree.XMLSyntaxError as exc:
            if not self._seen and not self._checked:
                raise XmlSyntaxError("the document is empty", None, None) from None
            # Everything fed was well-formed so far: what libxml2 finds at the end is the
            # end, cut before the root element closed.
            error = _logged(parser.feed_error_log) or _syntax(exc)
            if vouched:
                raise error from None
            where = f" at line {error.line}, column {error.column}" if error.line else ""
            raise CutShort("the document's root element is not closed (libxml2"
                           f"{where}: {error.reason})") from None
        self._records(parser.read_events(), out)

    def _look_for_entities(self, data: bytes) -> None:
        """`<!ENTITY` before the first record: refused before libxml2 reads it."""
        tail = self._tail
        window = tail + data
        found = window.find(_ENTITY)
        start = self._seen - len(tail)  # document offset of window[0]
        if found >= 0:
            breaks = window.count(b"\n", 0, found) - tail.count(b"\n")
            last = window.rfind(b"\n", 0, found)
            last_break = start + last if last >= 0 else self._last_break
            raise XmlSyntaxError(_DECLARES, self._lines + breaks + 1, start + found - last_break)
        if b"\n" in data:
            self._lines += data.count(b"\n")
            self._last_break = self._seen + data.rfind(b"\n")
        self._seen += len(data)
        self._tail = window[-(len(_ENTITY) - 1):]

    def _check_dtd(self, el: Element) -> None:
        """The DTD, once libxml2 has read it (whatever the encoding of the bytes)."""
        self._checked = True
        self._tail = b""
        dtd: Any = el.getroottree().docinfo.internalDTD
        if dtd is not None and next(dtd.iterentities(), None) is not None:
            raise XmlSyntaxError(_DECLARES, None, None)

    def _is_record(self, el: Element) -> bool:
        parent = el.getparent()
        if parent is not None and parent is self._parent:
            return True
        node = parent
        for tag in self._ancestors:
            if node is None or node.tag != tag:
                return False
            node = node.getparent()
        if node is not None:
            return False
        self._parent = parent
        return True

    def _records(self, events: Iterable[tuple[str, Any]],
                 out: tuple[list[list[str]], list[int], list[Any]]) -> None:
        rows, lines, errors = out
        make_row = self._fields.row
        cap = self.max_field_chars
        for _, el in events:
            parent = el.getparent()
            if (parent is None or parent is not self._parent) and not self._is_record(el):
                continue
            if not self._checked:
                self._check_dtd(el)
            self.records += 1
            try:
                row = make_row(el)
            except xmlpaths.RecordError as exc:
                errors.append((self.records, _raw(el), str(exc)))
            else:
                longest = max(map(len, row), default=0)
                if longest > cap:
                    name = self.header[[len(v) for v in row].index(longest)]
                    errors.append((self.records, _raw(el),
                                   field_cap_reason(name, longest, cap)))
                else:
                    rows.append(row)
                    lines.append(self.records)
            _forget(el)


def _forget(el: Element) -> None:
    """Drops the record and everything before it (siblings, ancestors' siblings)."""
    el.clear()  # its tail too
    node: Element | None = el
    while node is not None:
        parent = node.getparent()
        if parent is None:
            break
        while node.getprevious() is not None:
            del parent[0]
        node = parent


def _raw(el: Element) -> str:
    text = etree.tostring(el, encoding="unicode", with_tail=False)
    return text if len(text) <= RAW_CHARS else text[:RAW_CHARS - 3] + "..."


def _syntax(exc: etree.XMLSyntaxError) -> XmlSyntaxError:
    line, column = exc.position if exc.position else (None, None)
    reason = _WHERE.sub("", str(exc.msg or exc)).strip()
    return XmlSyntaxError(reason, line or None, column)


def _raise_logged(log: Any) -> None:
    error = _logged(log)
    if error is not None:
        raise error


def _logged(log: Any) -> XmlSyntaxError | None:
    for entry in log:
        if entry.level >= etree.ErrorLevels.ERROR:
            return XmlSyntaxError(entry.message.strip(), entry.line or None, entry.column)
    return None

