"""TextDecoder: UTF-8 in chunks, BOM dropped, bad bytes named by their 0-based offset;
byte-order marks pick UTF-16; a configured encoding; the cp1252 fallback."""

from __future__ import annotations

import re

import pytest

from worker.errors import FeedError, PermanentError
from worker.parsers.text import TextDecoder

BOM = b"\xef\xbb\xbf"


def decode_all(chunks: list[bytes], encoding: str | None = "utf-8") -> str:
    decoder = TextDecoder(encoding)
    text = "".join(decoder.decode(c) for c in chunks)
    return text + decoder.decode(b"", final=True)


def bad_offset(chunks: list[bytes]) -> int:
    """The byte offset named by the FeedError that decoding the chunks raises."""
    with pytest.raises(FeedError) as info:
        decode_all(chunks)
    message = str(info.value)
    assert "UTF-8" in message
    found = re.search(r"at byte (\d+)", message)
    assert found, message
    return int(found.group(1))


def test_plain_text() -> None:
    assert decode_all([b"a,b\n", b"1,2\n"]) == "a,b\n1,2\n"


def test_bom_is_dropped() -> None:
    assert decode_all([BOM + b"id\n"]) == "id\n"


@pytest.mark.parametrize("k", range(len(BOM) + 3))
def test_bom_split_across_chunks_is_dropped(k: int) -> None:
    data = BOM + "é,x\n".encode()
    assert decode_all([data[:k], data[k:]]) == "é,x\n"


def test_bom_only_at_the_start_is_dropped() -> None:
    assert decode_all([b"a" + BOM]) == "a\ufeff"


def test_file_of_only_a_bom() -> None:
    assert decode_all([BOM]) == ""


@pytest.mark.parametrize("char", ["é", "€", "𝄞"])
def test_multibyte_char_split_at_every_byte(char: str) -> None:
    data = f"a{char}b".encode()
    for k in range(len(data) + 1):
        assert decode_all([data[:k], data[k:]]) == f"a{char}b"
    assert decode_all([data[i:i + 1] for i in range(len(data))]) == f"a{char}b"


def test_decode_error_is_permanent_feed_error() -> None:
    with pytest.raises(FeedError) as info:
        TextDecoder("utf-8").decode(b"ok\xff", final=True)
    assert isinstance(info.value, PermanentError)
    assert info.value.__cause__ is None  # `from None`: no codec traceback in run errors


@pytest.mark.parametrize(
    ("chunks", "offset"),
    [
        ([b"abc\xffdef"], 3),
        ([b"\xff"], 0),
        ([b"abc", b"de\xff"], 5),
        ([b"abc", b"def", b"", b"g\x80h"], 7),
        ([b"ab", b"c\xc3(x"], 3),  # invalid continuation: the offset of the lead byte
    ],
)
def test_offset_of_bad_byte(chunks: list[bytes], offset: int) -> None:
    assert bad_offset(chunks) == offset


@pytest.mark.parametrize(
    ("chunks", "offset"),
    [
        ([b"ab\xc3", b"(x"], 2),  # 2-byte sequence started in the previous chunk
        ([b"ab\xe2\x82", b"(x"], 2),  # 3-byte sequence, two bytes in the previous chunk
        ([b"ab\xe2", b"\x82(x"], 2),
        ([b"ab\xc3"], 2),  # truncated at the end of the file
    ],
)
def test_offset_when_sequence_starts_in_earlier_chunk(chunks: list[bytes], offset: int) -> None:
    assert bad_offset(chunks) == offset


@pytest.mark.parametrize(
    ("chunks", "offset"),
    [
        ([BOM + b"ab\xff"], 5),
        ([BOM, b"a\xff"], 4),
        ([BOM + b"a", b"\xff"], 4),
        ([b"\xef\xbb", b"\xbfa\xff"], 4),
        ([BOM + b"\xff"], 3),
    ],
)
def test_offset_counts_the_bom(chunks: list[bytes], offset: int) -> None:
    assert bad_offset(chunks) == offset


def test_offset_advances_with_decoded_bytes() -> None:
    decoder = TextDecoder()
    decoder.decode(b"abc")
    decoder.decode("é".encode())
    assert decoder.offset == 5


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_utf16_bom_decides(encoding: str) -> None:
    text = "external_id,name\nA,Café ✓\n"
    bom = b"\xff\xfe" if encoding.endswith("le") else b"\xfe\xff"
    data = bom + text.encode(encoding)
    assert decode_all([data[i:i + 3] for i in range(0, len(data), 3)], None) == text
    decoder = TextDecoder()
    decoder.decode(data, final=True)
    assert decoder.encoding == encoding


def test_the_configured_encoding() -> None:
    data = "Größe,Preis\n".encode("iso-8859-1")
    assert decode_all([data], "latin-1") == "Größe,Preis\n"


def test_an_unknown_configured_encoding_fails_clearly() -> None:
    with pytest.raises(FeedError, match="unknown encoding 'klingon'"):
        decode_all([b"abcd"], "klingon")


def test_not_utf8_falls_back_to_cp1252_with_a_warning() -> None:
    data = "id,name\n1,Caf\u00e9 \u20ac\n".encode("cp1252")
    decoder = TextDecoder()
    text = "".join(decoder.decode(data[i:i + 2]) for i in range(0, len(data), 2))
    text += decoder.decode(b"", final=True)
    assert text == "id,name\n1,Café €\n"
    assert decoder.encoding == "cp1252"
    assert decoder.warnings == ["not valid UTF-8 at byte 13: read as cp1252"]


def test_no_fallback_after_utf8_text() -> None:
    """Real UTF-8 first, then a bad byte: a broken file, not a cp1252 one."""
    with pytest.raises(FeedError, match="UTF-8"):
        decode_all(["é\n".encode(), b"\xff\n"], None)
