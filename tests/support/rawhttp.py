"""A misbehaving HTTP server on loopback, on raw sockets: each response framed as a test
asks (Content-Length, chunked, or delimited by the connection's close) and cut where it
asks, the connection then closed, as a flaky supplier's server does."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class Reply:
    body: bytes
    framing: str = "close"      # length | chunked | close (no length: the close ends it)
    cut: int | None = None      # send this many bytes of the body, then close
    cut_requests: int | None = None  # cut only the first this many requests (None: all)
    length: int | None = None   # the Content-Length announced (default: the body's)
    version: str = "1.1"
    piece: int = 16 * 1024      # bytes written (and, chunked, per chunk) at a time
    requests: int = 0


class RawHttpServer:
    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def add(self, path: str, body: bytes, **kwargs: object) -> str:
        self.replies[path] = Reply(body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            reply = self.replies.get(path)
            if reply is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            else:
                reply.requests += 1
                await self._send(reply, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to tell it
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def _send(self, reply: Reply, writer: asyncio.StreamWriter) -> None:
        headers = [f"HTTP/{reply.version} 200 OK", "Content-Type: application/octet-stream",
                   "Connection: close"]
        if reply.framing == "length":
            length = len(reply.body) if reply.length is None else reply.length
            headers.append(f"Content-Length: {length}")
        elif reply.framing == "chunked":
            headers.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
        cut = reply.cut
        if reply.cut_requests is not None and reply.requests > reply.cut_requests:
            cut = None
        body = reply.body if cut is None else reply.body[:cut]
        for i in range(0, len(body), reply.piece):
            piece = body[i:i + reply.piece]
            if reply.framing == "chunked":
                piece = b"%x\r\n%s\r\n" % (len(piece), piece)
            writer.write(piece)
            await writer.drain()
        if reply.framing == "chunked" and cut is None:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
