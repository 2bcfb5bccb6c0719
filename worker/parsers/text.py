"""Bytes to text, incrementally, with the byte offset of any undecodable input."""

from __future__ import annotations

import codecs

from worker.errors import FeedError


class TextDecoder:
    """UTF-8 (a leading BOM is dropped); bad bytes fail the run with their offset."""

    def __init__(self, encoding: str = "utf-8-sig") -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._encoding = encoding
        self.offset = 0  # bytes decoded before the current chunk

    def decode(self, data: bytes, final: bool = False) -> str:
        held = len(self._decoder.getstate()[0])  # bytes of a character cut by the last chunk
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise FeedError(
                f"file is not valid {self._encoding.removesuffix('-sig').upper()} text: "
                f"{exc.reason} at byte {self.offset - held + max(exc.start, 0)}"
            ) from None
        self.offset += len(data)
        return text
