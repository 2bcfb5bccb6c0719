"""A failure inside a handler answers 500 in the error envelope, with neither a stack trace
nor a secret, and its log line masks the secrets (aiohttp's own test server, loopback)."""

from __future__ import annotations

from dataclasses import replace

import orjson
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from worker.api.context import CONTEXT, Context
from worker.api.middleware import envelope, gate, measure
from worker.settings import Settings

PASSWORD = "hunter2-secret"


async def test_an_unexpected_error_is_a_bare_500() -> None:
    settings = replace(Settings(), database_url=f"postgresql://fw:{PASSWORD}@db/feed_worker")

    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError(f"lost {settings.database_url} at line 3")

    app = web.Application(middlewares=[measure, envelope, gate])
    app[CONTEXT] = Context(settings, None, None, None)  # type: ignore[arg-type]
    app.router.add_get("/healthz", broken)  # a public path: no token needed
    with structlog.testing.capture_logs() as logged:
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/healthz")
            body = await r.read()
    assert r.status == 500
    assert orjson.loads(body) == {"error": {"code": "internal", "details": [],
                                            "message": "the request failed on our side; "
                                                       "try again later"}}
    [line] = [e for e in logged if e["event"] == "api.failed"]
    assert PASSWORD not in orjson.dumps(line).decode()
    assert "RuntimeError" in line["error"]
    assert "Traceback" not in body.decode()


async def test_the_database_away_is_a_503_to_retry() -> None:
    async def away(_: web.Request) -> web.Response:
        raise ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")

    app = web.Application(middlewares=[measure, envelope, gate])
    app[CONTEXT] = Context(Settings(), None, None, None)  # type: ignore[arg-type]
    app.router.add_get("/healthz", away)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/healthz")
        body = orjson.loads(await r.read())
    assert (r.status, r.headers["Retry-After"], body["error"]["code"]) == (503, "1",
                                                                           "unavailable")
