"""`feed-worker api` as a real process on a free port, and a client that speaks to it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from tests.support import openapi
from tests.support.process import DaemonProcess


class ApiProcess(DaemonProcess):
    """Started with `python -m worker api` on port 0; `url` once it listens."""

    def __init__(self, database_url: str, **env: str) -> None:
        super().__init__(database_url, "api-test", FEED_WORKER_API_PORT="0",
                         FEED_WORKER_API_HOST="127.0.0.1", **env)
        self.url = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "api", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read())
        started = await self.wait_event("api.started")
        self.url = f"http://127.0.0.1:{started['port']}"

    def log_text(self) -> str:
        return "\n".join(orjson.dumps(e).decode() for e in self.events)


class Client:
    """aiohttp's client with a base URL and a bearer token."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None) -> None:
        self.session, self.base, self.token = session, base, token

    def as_(self, token: str | None) -> Client:
        return Client(self.session, self.base, token)

    async def call(self, method: str, path: str, body: Any = None, *,
                   raw: bytes | None = None, headers: dict[str, str] | None = None
                   ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None:
            raw = orjson.dumps(body)
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        async with self.session.request(method, self.base + path, data=raw, headers=h) as r:
            text = await r.read()
            try:
                data = orjson.loads(text) if text else None
            except orjson.JSONDecodeError:
                data = text.decode(errors="replace")
            if path.startswith(("/api/", "/healthz", "/readyz")):
                # Every answer the tests see is checked against the OpenAPI document.
                openapi.check(method, path, r.status, data, r.content_type)
            return r.status, data, r.headers


@asynccontextmanager
async def client(base: str, token: str | None) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, base, token)


async def provider(admin: Client, name: str = "Acme", **more: Any) -> int:
    """A new dropship provider (admin), its id."""
    status, body, _ = await admin.call("POST", "/api/dropship-providers.json",
                                       {"name": name, **more})
    assert status == 201, body
    return int(body["id"])


async def feed(c: Client, provider_id: int, **more: Any) -> dict[str, Any]:
    """A new feed of the provider, as the API answered it."""
    status, body, _ = await c.call("POST", "/api/inventory-feeds.json",
                                   {"dropshipProviderId": provider_id, "name": "stock", **more})
    assert status == 201, body
    return dict(body)


def error(body: Any, code: str) -> dict[str, Any]:
    """The error envelope's inner object, checked to be one with this code."""
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    return dict(body["error"])
