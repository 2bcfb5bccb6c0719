"""Feeding a structured (XML/JSON) parser in chunks, and parsers and mappers built from
mapping JSON as a feed's loader parses it, for the parser and mapper tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from worker.feedmapping import parse_mapping
from worker.mapping import Mapper
from worker.model import DEFAULT_MAX_FIELD_CHARS, Feed, FeedMapping
from worker.parsers import RecordBatch
from worker.parsers.json import JsonRecords
from worker.parsers.xml import XmlRecords


def just_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """A mapping that reads only the fields it names (the parsers' tests look at those;
    auto-mapping the others is feedmapping's, tested there)."""
    return {"auto": False, **raw} if raw.get("fields") else raw


def xml_records(raw: dict[str, Any],
                max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> XmlRecords:
    return XmlRecords(parse_mapping(just_fields(raw), "xml"), max_field_chars)


def json_records(raw: dict[str, Any], max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
                 fast: bool = True) -> JsonRecords:
    """Not `fast`: ijson reads everything, as before the fast path."""
    return JsonRecords(parse_mapping(just_fields(raw), "json"), max_field_chars, fast=fast)


def csv_mapper(raw: dict[str, Any], header: Sequence[str] | None, *args: Any,
               **kwargs: Any) -> Mapper:
    """A mapper of a CSV feed's mapping, with a header row or (None) without one."""
    return Mapper(parse_mapping(raw, "ftp_csv", header is not None), header, *args, **kwargs)


def values_mapper(header: Sequence[str]) -> Mapper:
    """The mapper of an XML or JSON feed without value maps, as the stream builds it."""
    return Mapper(FeedMapping(), header)


class RecordParser(Protocol):
    header: list[str]
    records: int

    def feed(self, data: bytes) -> RecordBatch: ...

    def close(self) -> RecordBatch: ...


def parse_with(make: Callable[[dict[str, Any]], RecordParser], mapping: dict[str, Any],
               chunks: Iterable[bytes]) -> RecordBatch:
    """Every batch of a document fed as `chunks`, then close(), put together."""
    parser = make(mapping)
    out = RecordBatch(lines=[])
    assert isinstance(out.lines, list)
    batches = [parser.feed(chunk) for chunk in chunks]
    batches.append(parser.close())
    for batch in batches:
        assert len(batch.rows) == len(batch.lines)
        assert all(len(row) == len(parser.header) for row in batch.rows)
        out.rows += batch.rows
        out.lines += batch.lines
        out.errors += batch.errors
    assert parser.records == len(out.rows) + len(out.errors)
    return out


def make_feed(resource_type: str, mapping: dict[str, Any] | None = None) -> Feed:
    """A feed of that type with that mapping, as the loader would build it."""
    return Feed(id=1, name="f", enabled=True, resource_type=resource_type,
                resource_location=None, delimiter=None, csv_has_header=True,
                decimal_notation="decimal", encoding=None,
                mapping=parse_mapping(mapping or {}, resource_type),
                provider_archived=False)
