"""A TCP proxy on loopback that a test can cut or black-hole: a real network fault between
the worker and a service, without touching the service."""

from __future__ import annotations

import asyncio
import contextlib
import enum


class Mode(enum.Enum):
    FORWARD = "forward"
    CUT = "cut"            # open connections are closed, new ones closed at once
    BLACKHOLE = "blackhole"  # connections stay open, nothing goes through either way


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = Mode.FORWARD
        self.port = 0
        self.accepted = 0
        self.cut_after: int | None = None  # cut once this many bytes went upstream
        self.upstream_bytes = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.mode = Mode.CUT
        self._flowing.set()
        for a, b in list(self._links):
            a.close()
            b.close()
        self._links.clear()

    def blackhole(self) -> None:
        self.mode = Mode.BLACKHOLE
        self._flowing.clear()

    def heal(self) -> None:
        self.mode = Mode.FORWARD
        self._flowing.set()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode is Mode.CUT:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, upstream=True),
                                 self._pipe(up_reader, writer))
        finally:
            self._links.discard(link)
            for w in link:
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    upstream: bool = False) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self._flowing.wait()  # a black hole holds the bytes
                if upstream:
                    self.upstream_bytes += len(data)
                    if self.cut_after is not None and self.upstream_bytes > self.cut_after:
                        self.cut()
                if self.mode is Mode.CUT or writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        writer.close()
