"""A real HTTP server on loopback that takes notifications (worker/notify) and checks their
signatures on its own (HMAC-SHA256 of "<timestamp>.<body>"), as a receiver would."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signed: bool  # a signature that matches under the receiver's secret, made just now

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    secret: str
    answers: list[int] = field(default_factory=list)  # statuses to answer first, in order
    received: list[Received] = field(default_factory=list)  # every request, answered or not
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in order."""
        return [r for r, status in zip(self.received, self._statuses, strict=True)
                if 200 <= status < 300]

    async def start(self) -> None:
        self._statuses: list[int] = []
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        stamp = headers.get("X-Feed-Worker-Timestamp", "")
        given = headers.get("X-Feed-Worker-Signature", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return False
        mac = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        return hmac.compare_digest("sha256=" + mac.hexdigest(), given)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.received.append(Received(headers, body, self.verify(headers, body)))
        status = self.answers.pop(0) if self.answers else 200
        self._statuses.append(status)
        return web.Response(status=status, text="ok" if status < 300 else "try again")
