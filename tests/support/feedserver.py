"""A real HTTP server on loopback that serves feed files with the behaviours tests need."""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    auth: tuple[str, str] | None = None
    content_type: str = "text/csv"
    stall_after: int | None = None   # send this many bytes, then hang until released
    chunk: int = 64 * 1024
    redirect: str | None = None      # answer 302 to this location
    etag: str | None = None          # sent, and answered with 304 when asked for again
    headers: dict[str, str] = field(default_factory=dict)  # more response headers
    bearer: str | None = None        # the token a request must carry
    failures: int = 0                # answer `status` to this many requests, then the body
    pace_s: float = 0.0              # pause between chunks (a slow or trickling server)
    requests: int = 0
    queries: list[str] = field(default_factory=list)  # each request's query string
    sent: int = 0                    # body bytes written to clients (all requests)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)


class FeedServer:
    """`tls`: served over HTTPS with this context (tests.support.ftpserver makes the test
    certificates)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.tls = tls

    def add(self, path: str, body: bytes = b"", **kwargs: object) -> str:
        self.routes[path] = Route(body=body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{auth}127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for route in self.routes.values():
            route.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="not found")
        route.requests += 1
        route.queries.append(request.query_string)
        route.started.set()
        if route.auth is not None:
            expected = "Basic " + base64.b64encode(":".join(route.auth).encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401, text="unauthorized",
                                    headers={"WWW-Authenticate": 'Basic realm="feeds"'})
        if route.bearer is not None and \
                request.headers.get("Authorization") != f"Bearer {route.bearer}":
            return web.Response(status=401, text="token required")
        if route.etag is not None and request.headers.get("If-None-Match") == route.etag:
            return web.Response(status=304)
        if route.redirect is not None:
            return web.Response(status=302, headers={"Location": route.redirect})
        if route.status != 200 and (route.failures == 0 or route.requests <= route.failures):
            return web.Response(status=route.status, text=f"status {route.status}",
                                headers=route.headers)
        headers = {"Content-Type": route.content_type, **route.headers}
        if route.etag is not None:
            headers["ETag"] = route.etag
        response = web.StreamResponse(headers=headers)
        response.content_length = len(route.body)
        await response.prepare(request)
        limit = len(route.body) if route.stall_after is None else route.stall_after
        for i in range(0, limit, route.chunk):
            piece = route.body[i:min(i + route.chunk, limit)]
            await response.write(piece)
            route.sent += len(piece)
            if route.pace_s:
                await asyncio.sleep(route.pace_s)
        if route.stall_after is not None:
            await route.released.wait()
            await response.write(route.body[limit:])
        await response.write_eof()
        return response
