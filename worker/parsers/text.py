"""Bytes to text, incrementally: a byte-order mark decides (UTF-8, UTF-16 LE/BE), else
the feed's configured encoding, else UTF-8 with a fallback to cp1252 (recorded as a
warning) when the bytes are not UTF-8. Undecodable input fails the run with its offset."""

from __future__ import annotations

import codecs

from worker.errors import FeedError

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
FALLBACK = "cp1252"


class TextDecoder:
    def __init__(self, encoding: str | None = None) -> None:
        self.configured = encoding
        self.encoding: str | None = None  # decided at the first bytes
        self.warnings: list[str] = []
        self.offset = 0  # bytes decoded before the current chunk
        self._decoder: codecs.IncrementalDecoder | None = None
        self._head = b""
        self._ascii = True  # everything decoded so far was ASCII (same in cp1252)

    def decode(self, data: bytes, final: bool = False) -> str:
        if self._decoder is None:
            self._head += data
            if len(self._head) < 4 and not final:
                return ""
            data, self._head = self._head, b""
            data = self._start(data)
        return self._decode(data, final)

    def _start(self, data: bytes) -> bytes:
        for bom, name in _BOMS:
            if data.startswith(bom):
                self._use(name)
                self.offset = len(bom)
                self._ascii = False  # the mark settles it: no fallback
                return data[len(bom):]
        self._use(self.configured or "utf-8")
        return data

    def _use(self, name: str) -> None:
        try:
            info = codecs.lookup(name)
        except LookupError:
            raise FeedError(f"unknown encoding {name!r} in the feed's settings") from None
        self.encoding = info.name
        self._decoder = info.incrementaldecoder("strict")

    def _decode(self, data: bytes, final: bool) -> str:
        decoder = self._decoder
        if decoder is None:  # pragma: no cover - set by _start
            raise RuntimeError("decoder not started")
        held = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk
        try:
            text = decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            at = self.offset - held + max(exc.start, 0)
            before = data[:max(exc.start - held, 0)]
            if (self.encoding == "utf-8" and self.configured is None and self._ascii
                    and before.isascii()):
                # Not UTF-8, and nothing but ASCII so far: the same bytes in cp1252.
                self.warnings.append(f"not valid UTF-8 at byte {at}: read as {FALLBACK}")
                pending = decoder.getstate()[0]
                self._use(FALLBACK)
                return self._decode(pending + data, final)
            raise FeedError(f"file is not valid {(self.encoding or '?').upper()} text: "
                            f"{exc.reason} at byte {at}") from None
        self.offset += len(data)
        if self._ascii and not text.isascii():
            self._ascii = False
        return text
