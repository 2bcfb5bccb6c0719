"""The application: its routes and middlewares, and the process that serves it.

Stateless: every request reads and writes Postgres and RabbitMQ only (the rate limit's
buckets aside), so any number of replicas can run behind a load balancer."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import aio_pika
import asyncpg
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker import __version__, broker, logs
from worker import constants as C
from worker.api import feeds, openapi, preview, providers, push, runs, variants
from worker.api.cache import TtlCache
from worker.api.context import CONTEXT, Context
from worker.api.errors import json
from worker.api.limits import TokenBuckets
from worker.api.middleware import envelope, gate, measure
from worker.pipeline.syncpush import GroupCommitter
from worker.settings import Settings
from worker.store import db
from worker.urls import mask

log = logs.get(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ID = r"{id:\d+}"

# (method, path, handler): every route of the API, in one place.
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/api/dropship-providers.json", providers.create),
    ("GET", "/api/dropship-providers.json", providers.index),
    ("GET", f"/api/dropship-providers/{_ID}.json", providers.show),
    ("PUT", f"/api/dropship-providers/{_ID}.json", providers.update),
    ("POST", "/api/inventory-feeds.json", feeds.create),
    ("POST", "/api/inventory-feed.json", feeds.create),  # the seed guide's spelling
    ("GET", "/api/inventory-feeds.json", feeds.index),
    ("GET", f"/api/inventory-feeds/{_ID}.json", feeds.show),
    ("PUT", f"/api/inventory-feeds/{_ID}.json", feeds.update),
    ("PUT", f"/api/inventory-feeds/{_ID}/parse-webhook.json", push.parse_webhook),
    ("GET", f"/api/inventory-feeds/{_ID}/preview.json", preview.show),
    ("GET", "/api/push-messages/{messageId:[A-Za-z0-9._~:-]+}.json", push.status),
    ("GET", "/api/inventory-feed-variants.json", variants.index),
    ("GET", f"/api/inventory-feed-variants/{_ID}.json", variants.show),
    ("PUT", f"/api/inventory-feed-variants/{_ID}.json", variants.update),
    ("POST", f"/api/inventory-feeds/{_ID}/fetch.json", runs.fetch),
    ("GET", f"/api/inventory-feeds/{_ID}/runs.json", runs.runs),
    ("GET", f"/api/feed-runs/{_ID}/rejects.json", runs.rejects),
]


class Probe:
    """Readiness: Postgres answers and the broker connection is open."""

    def __init__(self, pool: asyncpg.Pool, connection: AbstractRobustConnection) -> None:
        self.pool, self.connection = pool, connection

    async def problems(self) -> list[str]:
        found = []
        if self.connection.is_closed:
            found.append("rabbitmq: not connected")
        try:
            await asyncio.wait_for(db.ping(self.pool), 2.0)
        except Exception as exc:
            found.append(f"postgres: {type(exc).__name__}")
        return found


def make_app(ctx: Context, probe: Probe) -> web.Application:
    app = web.Application(middlewares=[measure, envelope, gate],
                          client_max_size=ctx.settings.api_max_body_bytes)
    app[CONTEXT] = ctx

    async def healthz(_: web.Request) -> web.Response:
        return json({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        found = await probe.problems()
        return json({"ready": not found, "problems": found}, status=503 if found else 200)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/api/openapi.json", openapi.serve, allow_head=False)
    openapi.document()  # read once at start: a broken document stops the process here
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


async def serve(settings: Settings, *, handle_signals: bool = True) -> int:
    """`feed-worker api`: serve until SIGTERM/SIGINT, then close in reverse order."""
    stopping = asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
    pool = await db.create_pool(settings.database_url, size=settings.db_pool_size,
                                keep_sessions=True)
    connection: AbstractRobustConnection | None = None
    runner: web.AppRunner | None = None
    committer: GroupCommitter | None = None
    ctx: Context | None = None
    try:
        connection = await broker.connect(settings.amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(C.EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        committer = GroupCommitter(pool, settings)
        ctx = Context(settings, pool, exchange,
                      TokenBuckets(settings.api_rate_per_s, settings.api_rate_burst),
                      committer, TtlCache(settings.api_cache_s), TtlCache(settings.api_cache_s))
        runner = web.AppRunner(make_app(ctx, Probe(pool, connection)), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.api_host, settings.api_port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.api_port
        log.info("api.started", version=__version__, host=settings.api_host, port=port,
                 database=mask(settings.database_url), amqp=mask(settings.amqp_url))
        await stopping.wait()
        log.info("api.stopping")
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()  # finishes requests in flight
        if committer is not None:
            await committer.close()
        if ctx is not None:
            await ctx.published.close()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
        await pool.close()
