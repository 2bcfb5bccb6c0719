"""The csv-spectrum conformance corpus: each CSV, read with its header row, gives its twin.

The corpus lives outside the repository (../shared/corpus beside the checkout, or TEST_CORPUS_DIR)
and is used as it is. Two twins in this copy disagree with their CSV; CORRECTIONS says
how, and a test checks that each correction is still needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.corpus import CORPUS as SHARED
from tests.unit.csvhelp import Parsed, parse_bytes, parse_text, parse_text_last_final, sized

CORPUS = SHARED / "csv-spectrum"
CSVS = CORPUS / "csvs"
TWINS = CORPUS / "json"


@dataclass(frozen=True)
class Correction:
    why: str
    symptom: Callable[[bytes, Any], bool]  # (csv bytes, twin as loaded) -> still broken?
    fix: Callable[[Any], list[dict[str, str]]]


CORRECTIONS: dict[str, Correction] = {
    "location_coordinates": Correction(
        why="the twin is a single object, not a list, and its phone number (1234567890) is "
            "not the one in the CSV (2095257564)",
        symptom=lambda data, twin: (isinstance(twin, dict)
                                    and twin["Contact Phone Number"] == "1234567890"
                                    and b"2095257564" in data),
        fix=lambda twin: [{**twin, "Contact Phone Number": "2095257564"}],
    ),
    "newlines_crlf": Correction(
        why="the CSV holds LF line endings, but the twin expects \\r\\n in the quoted field",
        symptom=lambda data, twin: (b"\r" not in data
                                    and any("\r\n" in v for r in twin for v in r.values())),
        fix=lambda twin: [{k: v.replace("\r\n", "\n") for k, v in r.items()} for r in twin],
    ),
}


def _names() -> list[str]:
    if not CSVS.is_dir():
        raise FileNotFoundError(
            f"csv-spectrum corpus not found at {CORPUS}: set TEST_CORPUS_DIR to the folder "
            "holding csv-spectrum/ (see ../shared/corpus/README.md)")
    return sorted(p.stem for p in CSVS.glob("*.csv"))


NAMES = _names()


def _data(name: str) -> bytes:
    return (CSVS / f"{name}.csv").read_bytes()


def _twin(name: str) -> Any:
    return json.loads((TWINS / f"{name}.json").read_text(encoding="utf-8"))


def _expected(name: str) -> list[dict[str, str]]:
    twin = _twin(name)
    return CORRECTIONS[name].fix(twin) if name in CORRECTIONS else twin


def _records(parsed: Parsed) -> list[dict[str, str]]:
    assert parsed.errors == []
    assert parsed.rows, "no header row"
    header, *rows = parsed.rows
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_corpus_is_complete() -> None:
    assert len(NAMES) >= 12
    assert sorted(p.stem for p in TWINS.glob("*.json")) == NAMES
    assert set(CORRECTIONS) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_file_gives_its_twin(name: str) -> None:
    assert _records(parse_bytes([_data(name)])) == _expected(name)


@pytest.mark.parametrize("name", NAMES)
def test_twin_agrees_unless_corrected(name: str) -> None:
    """Only the files in CORRECTIONS may disagree with their twin as it is on disk."""
    parsed = _records(parse_bytes([_data(name)]))
    if name in CORRECTIONS:
        assert parsed != _twin(name)
    else:
        assert parsed == _twin(name)


@pytest.mark.parametrize("name", sorted(CORRECTIONS))
def test_correction_is_still_needed(name: str) -> None:
    """Fails once the corpus is fixed: then drop the entry from CORRECTIONS."""
    correction = CORRECTIONS[name]
    twin = _twin(name)
    assert correction.symptom(_data(name), twin), f"{name}: no longer {correction.why}"
    assert correction.fix(twin) != twin


@pytest.mark.parametrize("name", NAMES)
def test_every_byte_split_gives_the_same(name: str) -> None:
    data = _data(name)
    whole = parse_bytes([data])
    for k in range(len(data) + 1):
        assert parse_bytes([data[:k], data[k:]]) == whole, f"split at byte {k}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 64])
def test_fixed_size_chunks_give_the_same(name: str, size: int) -> None:
    data = _data(name)
    assert parse_bytes(sized(data, size)) == parse_bytes([data])


@pytest.mark.parametrize("name", NAMES)
def test_text_chunks_either_ending_give_the_same(name: str) -> None:
    text = _data(name).decode("utf-8")
    whole = parse_text([text])
    assert _records(whole) == _expected(name)
    for k in range(len(text) + 1):
        pieces = [text[:k], text[k:]]
        assert parse_text(pieces) == whole, f"split at char {k}"
        assert parse_text_last_final(pieces) == whole, f"split at char {k}, final last"
    assert parse_text_last_final(list(text) or [""]) == whole
