"""Why a well-formed JSON document is refused: not records where the mapping looks for
them, or a line of newline-delimited JSON that does not hold one value."""

from __future__ import annotations

from typing import Any

import orjson

from worker.errors import FeedError
from worker.parsers.jsonstream import JsonSyntaxError, Stream

PROBE = 16 * 1024  # bytes at a time for the parser that looks for the array


class JsonShapeError(FeedError):
    """Well-formed JSON, but not records where the mapping looks for them."""


def document_message(first: str) -> str:
    """A document that is one value, not an array of records, by its first character."""
    kinds = {"{": "an object", "[": "an array", '"': "a string", "t": "a boolean",
             "f": "a boolean", "n": "null"}
    kind = kinds.get(first, "a number")
    hint = (": set mapping.record to the dotted path of the array of records"
            if first == "{" else "")
    return f"the document is {kind}, not an array of records{hint}"


def array_at(events: list[tuple[str, str, Any]], record: str) -> bool:
    """Whether the parser's events reached the value at `record` (mapping.record): True
    for an array; anything else there is refused."""
    for prefix, event, _ in events:
        if prefix == record and event != "map_key":
            if event != "start_array":
                kind = {"start_map": "an object", "string": "a string",
                        "number": "a number", "boolean": "a boolean",
                        "null": "null"}.get(event, event)
                raise JsonShapeError(f"{record!r} (mapping.record) is {kind}, not an "
                                     "array of records")
            return True
    return False


def look(probe: Stream, data: bytes, record: str, final: bool = False) -> bool:
    """Feeds the event parser `probe` (a small piece at a time: it is slow) until it meets
    `record` (mapping.record): True for an array there; anything else is refused."""
    for i in range(0, len(data), PROBE):
        events: list[tuple[str, str, Any]] = []
        probe.send(data[i:i + PROBE], events)
        if array_at(events, record):
            return True
    if not final:
        return False
    events = []
    probe.close(events)
    return array_at(events, record)


def bad_line(lines: list[bytes], start: int, before: int) -> JsonSyntaxError:
    """The first of `lines` (the document's from line `before` + 1 and byte `start`) that
    does not hold exactly one value."""
    offset = start
    for i, line in enumerate(lines, before + 1):
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
                           offset, line=before + 1)
