"""Drive CsvParser (and TextDecoder) the way the pull pipeline does, chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from worker.model import DEFAULT_MAX_FIELD_CHARS
from worker.parsers import RecordBatch
from worker.parsers.csv import CsvParser
from worker.parsers.text import TextDecoder

T = TypeVar("T", str, bytes)


@dataclass
class Parsed:
    """Everything a sequence of feeds gave, concatenated."""

    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, batch: RecordBatch) -> None:
        assert len(batch.rows) == len(batch.lines), "one start line per record"
        self.rows += batch.rows
        self.lines += list(batch.lines)
        self.errors += batch.errors


def parse_text(chunks: Iterable[str], delimiter: str = ",",
               max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> Parsed:
    """Each chunk fed with final=False, then an empty final feed (as pipeline/pull.py does)."""
    parser = CsvParser(delimiter, max_field_chars=max_field_chars)
    out = Parsed()
    for chunk in chunks:
        out.add(parser.feed(chunk))
    out.add(parser.feed("", final=True))
    assert parser.records == len(out.rows)
    return out


def parse_text_last_final(chunks: Sequence[str], delimiter: str = ",",
                          max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> Parsed:
    """The last chunk itself carries final=True (the other legal way to end)."""
    parser = CsvParser(delimiter, max_field_chars=max_field_chars)
    out = Parsed()
    for i, chunk in enumerate(chunks):
        out.add(parser.feed(chunk, final=i == len(chunks) - 1))
    return out


def parse_bytes(chunks: Iterable[bytes], delimiter: str = ",") -> Parsed:
    """Bytes -> TextDecoder -> CsvParser, like a download."""
    decoder = TextDecoder("utf-8")
    parser = CsvParser(delimiter)
    out = Parsed()
    for chunk in chunks:
        out.add(parser.feed(decoder.decode(chunk)))
    out.add(parser.feed(decoder.decode(b"", final=True), final=True))
    return out


def sized(data: T, size: int) -> list[T]:
    """data cut into pieces of `size` (the last one shorter)."""
    return [data[i:i + size] for i in range(0, len(data), size)]


def two_way_splits(data: T) -> Iterator[tuple[int, list[T]]]:
    """(k, [data[:k], data[k:]]) for every split point k in 0..len(data)."""
    for k in range(len(data) + 1):
        yield k, [data[:k], data[k:]]
