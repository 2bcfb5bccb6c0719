"""Serve the benchmark's files over HTTP on loopback, streamed from disk (sendfile)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

READY_DEADLINE_S = 10.0


@asynccontextmanager
async def serve_files(files: Mapping[str, Path]) -> AsyncIterator[str]:
    """Serve `files` as `/<name>` on a free port of 127.0.0.1; yields the base URL."""

    async def handler(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound
        return web.FileResponse(path, chunk_size=256 * 1024)

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        await web.SockSite(runner, sock).start()
        base_url = f"http://127.0.0.1:{port}"
        await _wait_until_answering(f"{base_url}/{next(iter(files))}")
        yield base_url
    finally:
        await runner.cleanup()
        sock.close()


async def _wait_until_answering(url: str) -> None:
    timeout = aiohttp.ClientTimeout(total=READY_DEADLINE_S)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.head(url) as response:
        if response.status != 200:
            raise RuntimeError(f"benchmark HTTP server answered {response.status} for {url}")
