"""CsvParser: records, their start lines and unreadable lines, the same whatever the chunking."""

from __future__ import annotations

import csv
import io
import random

import pytest

from tests.unit.csvhelp import Parsed, parse_text, parse_text_last_final, sized, two_way_splits
from worker.model import DEFAULT_MAX_FIELD_CHARS
from worker.parsers.csv import CsvParser

EXOTIC = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]

# One text with most of what can go wrong at a chunk boundary.
MIXED = (
    "id,note,qty\r\n"
    "\r\n"
    'A1,"two\r\nlines",1\r\n'
    "A2,\"say \"\"hi\"\"\",2\n"
    "\n"
    'A3,"x\x0cy\u2028z",3\r'
    "A4,\"a,b\",4\r\n"
    '"A\n5",,5\n'
    "A6,last,6"
)
MIXED_ROWS = [
    ["id", "note", "qty"],
    ["A1", "two\r\nlines", "1"],
    ["A2", 'say "hi"', "2"],
    ["A3", "x\x0cy\u2028z", "3"],
    ["A4", "a,b", "4"],
    ["A\n5", "", "5"],
    ["A6", "last", "6"],
]
MIXED_LINES = [1, 3, 5, 7, 8, 9, 11]


def assert_chunking_invariant(text: str, delimiter: str = ",",
                              max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> Parsed:
    """Whole, split at every point, and in small pieces: the same result."""
    cap = max_field_chars
    whole = parse_text([text], delimiter, cap)
    assert parse_text_last_final([text], delimiter, cap) == whole
    for k, pieces in two_way_splits(text):
        assert parse_text(pieces, delimiter, cap) == whole, f"split at {k}"
        assert parse_text_last_final(pieces, delimiter, cap) == whole, \
            f"split at {k}, final last"
    for size in (1, 2, 3, 5, 8):
        assert parse_text(sized(text, size), delimiter, cap) == whole, f"chunks of {size}"
    return whole


def test_mixed_sample_whole() -> None:
    got = parse_text([MIXED])
    assert got.rows == MIXED_ROWS
    assert got.lines == MIXED_LINES
    assert got.errors == []


def test_mixed_sample_any_chunking() -> None:
    assert assert_chunking_invariant(MIXED).rows == MIXED_ROWS


def test_crlf_endings_are_not_in_fields() -> None:
    got = assert_chunking_invariant("a,b\r\n1,2\r\n3,4\r\n")
    assert got.rows == [["a", "b"], ["1", "2"], ["3", "4"]]
    assert got.lines == [1, 2, 3]


def test_crlf_split_between_cr_and_lf() -> None:
    got = parse_text(["a,b\r", "\n1,2\r", "\n3,4\r", "\n"])
    assert got.rows == [["a", "b"], ["1", "2"], ["3", "4"]]
    assert got.lines == [1, 2, 3]  # a lone \r at a chunk end is not a line of its own


def test_crlf_split_inside_quoted_field() -> None:
    got = parse_text(['a,b\n1,"x\r', '\ny"\n2,z\n'])
    assert got.rows == [["a", "b"], ["1", "x\r\ny"], ["2", "z"]]
    assert got.lines == [1, 2, 4]


def test_lone_cr_line_endings() -> None:
    got = assert_chunking_invariant("a,b\r1,2\r\r3,4")
    assert got.rows == [["a", "b"], ["1", "2"], ["3", "4"]]
    assert got.lines == [1, 2, 4]


def test_quoted_newlines_spanning_many_chunks() -> None:
    text = 'id,desc\n1,"line one\nline two\r\nline three"\n2,x\n'
    got = parse_text(sized(text, 4))
    assert got.rows == [["id", "desc"], ["1", "line one\nline two\r\nline three"], ["2", "x"]]
    assert got.lines == [1, 2, 5]
    assert assert_chunking_invariant(text) == got


def test_quoted_record_is_held_until_it_ends() -> None:
    parser = CsvParser()
    first = parser.feed('h\n"open\n')
    assert first.rows == [["h"]]
    assert parser.feed("still open\n").rows == []
    last = parser.feed('closed"\nnext\n')
    assert last.rows == [["open\nstill open\nclosed"], ["next"]]
    assert list(last.lines) == [2, 5]
    assert parser.feed("", final=True).rows == []
    assert parser.records == 3


def test_start_lines_count_physical_lines() -> None:
    text = 'h1,h2\n\n"a\nb",1\n\r\n\nc,2\r\n"d\r\n\r\ne",3'
    got = assert_chunking_invariant(text)
    assert got.rows == [["h1", "h2"], ["a\nb", "1"], ["c", "2"], ["d\r\n\r\ne", "3"]]
    assert got.lines == [1, 3, 7, 8]


def test_blank_lines_are_skipped() -> None:
    got = assert_chunking_invariant("\n\na,b\n\n\r\n\r1,2\n\n")
    assert got.rows == [["a", "b"], ["1", "2"]]
    assert got.lines == [3, 7]
    assert got.errors == []


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n", "\n\n\n"])
def test_nothing_but_blank_lines(text: str) -> None:
    got = assert_chunking_invariant(text)
    assert got == Parsed()


def test_nul_byte_is_an_error_and_later_records_parse() -> None:
    """Postgres text cannot hold NUL, so the record must be reported, not passed on."""
    text = "a,b\n1,x\x00y\n2,z\n"
    got = assert_chunking_invariant(text)
    # The raw text is stored in Postgres too: the NUL is shown as \0.
    assert [(line, raw) for line, raw, _ in got.errors] == [(2, "1,x\\0y")]
    assert "nul" in got.errors[0][2].lower()
    assert got.rows == [["a", "b"], ["2", "z"]]
    assert got.lines == [1, 3]


def test_nul_lines_are_counted() -> None:
    parser = CsvParser()
    parser.feed("a,b\n1,\x00\n2,x")
    parser.feed("\x00y\n3,z\n\x00\x00\n")
    parser.feed("", final=True)
    assert parser.nul_lines == 3


def test_field_over_the_cap_is_a_reject_not_a_crash() -> None:
    big = "x" * (DEFAULT_MAX_FIELD_CHARS + 1)
    text = f"a,b\n1,{big}\n2,ok\n"
    whole = parse_text([text])
    assert len(whole.errors) == 1
    line, raw, reason = whole.errors[0]
    assert (line, raw) == (2, f"1,{big}\n")
    assert reason == (f"field 2 is {DEFAULT_MAX_FIELD_CHARS + 1} characters long, over the "
                      f"{DEFAULT_MAX_FIELD_CHARS}-character cap (FEED_WORKER_MAX_FIELD_CHARS)")
    assert whole.rows == [["a", "b"], ["2", "ok"]]
    assert whole.lines == [1, 3]
    assert parse_text(sized(text, 8192)) == whole
    half = DEFAULT_MAX_FIELD_CHARS // 2
    assert parse_text([text[:half], text[half:]]) == whole


def test_field_of_exactly_the_cap_is_kept() -> None:
    got = assert_chunking_invariant("a,b\n1,xxxxx\n2,yyyyyy\n3,z\n", max_field_chars=5)
    assert got.rows == [["a", "b"], ["1", "xxxxx"], ["3", "z"]]
    assert [(line, raw) for line, raw, _ in got.errors] == [(3, "2,yyyyyy\n")]
    assert "field 2 is 6 characters long, over the 5-character cap" in got.errors[0][2]


def test_the_cap_is_the_parsers_own_not_the_csv_modules() -> None:
    before = csv.field_size_limit()
    got = parse_text([f"a\n{'x' * (before + 10)}\n"], max_field_chars=before + 10)
    assert got.errors == []
    assert len(got.rows[1][0]) == before + 10
    assert csv.field_size_limit() == before  # left as it was


def test_quoted_field_over_the_cap_across_lines_is_one_reject() -> None:
    """The long field is read to its closing quote: one reject, the next record intact
    (not the rest of the field taken for records)."""
    half = "y" * 30
    text = f'a,b\n1,"{half}\n{half}\n{half}"\n2,"ok\n,fine"\n3,z\n'
    got = assert_chunking_invariant(text, max_field_chars=80)
    assert [(line, raw) for line, raw, _ in got.errors] == [
        (2, f'1,"{half}\n{half}\n{half}"\n')]
    assert "field 2 is 92 characters long, over the 80-character cap" in got.errors[0][2]
    assert got.rows == [["a", "b"], ["2", "ok\n,fine"], ["3", "z"]]
    assert got.lines == [1, 5, 7]


def test_unclosed_quote_is_unreadable_past_eight_times_the_cap() -> None:
    """An unclosed quote is not read to the end of the file: past 8 times the cap the
    lines read so far are rejected and reading resumes on the next line."""
    text = 'a,b\n1,"open\n' + "".join(f"{i},line\n" for i in range(2, 40))
    got = parse_text(sized(text, 7), max_field_chars=10)
    assert got.errors[0][0] == 2
    assert "runs past 80 characters" in got.errors[0][2]
    assert got.rows[0] == ["a", "b"]
    assert got.rows[-1] == ["39", "line"]
    assert parse_text([text], max_field_chars=10) == got


@pytest.mark.parametrize("ch", EXOTIC, ids=[f"U+{ord(c):04X}" for c in EXOTIC])
def test_exotic_line_separators_stay_in_the_field(ch: str) -> None:
    text = f'a,b\n1,x{ch}y\n2,"{ch}"\n{ch},3\n'
    got = assert_chunking_invariant(text)
    assert got.rows == [["a", "b"], ["1", f"x{ch}y"], ["2", ch], [ch, "3"]]
    assert got.lines == [1, 2, 3, 4]


def test_exotic_character_only_in_a_later_chunk() -> None:
    got = parse_text(["a,b\n1,", "x\u2028y\n2,", "z\n"])
    assert got.rows == [["a", "b"], ["1", "x\u2028y"], ["2", "z"]]
    assert got.lines == [1, 2, 3]


def test_tab_delimiter() -> None:
    got = assert_chunking_invariant('a\tb\n1\t"x\ty"\n2\t3,5\n', "\t")
    assert got.rows == [["a", "b"], ["1", "x\ty"], ["2", "3,5"]]


def test_semicolon_delimiter() -> None:
    got = assert_chunking_invariant('a;b\r\n1;"x;y"\r\n2;3,5', ";")
    assert got.rows == [["a", "b"], ["1", "x;y"], ["2", "3,5"]]
    assert got.lines == [1, 2, 3]


def test_comma_is_data_with_another_delimiter() -> None:
    assert parse_text(["a,b;c\n"], ";").rows == [["a,b", "c"]]


def test_final_record_without_trailing_newline() -> None:
    got = assert_chunking_invariant("a,b\n1,2")
    assert got.rows == [["a", "b"], ["1", "2"]]
    assert got.lines == [1, 2]


def test_final_quoted_record_without_trailing_newline() -> None:
    got = assert_chunking_invariant('a,b\n1,"x\ny"')
    assert got.rows == [["a", "b"], ["1", "x\ny"]]


def test_unfinished_last_line_waits_for_final() -> None:
    parser = CsvParser()
    assert parser.feed("a,b\n1,2").rows == [["a", "b"]]
    end = parser.feed("", final=True)
    assert end.rows == [["1", "2"]]
    assert list(end.lines) == [2]


def _physical_lines(text: str) -> int:
    return len(text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n").split("\n"))


@pytest.mark.parametrize("seed", range(8))
def test_random_texts_any_chunking_match_the_stdlib(seed: int) -> None:
    """Seeded random texts: the stdlib reader on the whole text is the reference for rows;
    every split gives the same rows and start lines as the whole text."""
    rng = random.Random(seed)
    pieces = ["a", "bc", ",", '"', '""', "\n", "\r", "\r\n", "\x0c", "\u2028", " "]
    for _ in range(60):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 16)))
        reference = [r for r in csv.reader(io.StringIO(text, newline=""), strict=False) if r]
        whole = assert_chunking_invariant(text)
        assert whole.rows == reference, repr(text)
        assert whole.lines == sorted(set(whole.lines)), repr(text)
        assert all(1 <= n <= _physical_lines(text) for n in whole.lines), repr(text)
