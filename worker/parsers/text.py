"""Bytes to text, incrementally, with the byte offset of any undecodable input."""

from __future__ import annotations

import codecs

from worker.errors import FeedError

BOM = "\ufeff"


class TextDecoder:
    """UTF-8 (a leading byte-order mark is dropped); bad bytes fail the run with their offset."""

    def __init__(self, encoding: str = "utf-8") -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._encoding = encoding
        self._start = True
        self.offset = 0  # bytes decoded before the current chunk

    def decode(self, data: bytes, final: bool = False) -> str:
        held = len(self._decoder.getstate()[0])  # bytes of a character cut by the last chunk
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise FeedError(
                f"file is not valid {self._encoding.upper()} text: "
                f"{exc.reason} at byte {self.offset - held + max(exc.start, 0)}"
            ) from None
        self.offset += len(data)
        if self._start and text:
            self._start = False
            text = text.removeprefix(BOM)
        return text
