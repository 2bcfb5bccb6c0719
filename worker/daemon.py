"""The daemon's lifecycle: connections, consumers, side tasks, signals, drain.

Shutdown order: stop consuming, let in-flight runs finish within the grace period, hand
back the rest (their leases are released), then close connections in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web

from worker import __version__, broker, gauges, gcpause, health, logs, retention, sdnotify
from worker import constants as C
from worker.notify.notifier import Notifier
from worker.pipeline.pushretry import Consumption
from worker.pusher import PushConsumer
from worker.runner import PullRunner
from worker.scheduler import Scheduler
from worker.settings import Settings
from worker.store import db
from worker.urls import mask

log = logs.get(__name__)

# What the daemon logs when it starts (event daemon.send_work): the README's "Send the
# worker work", in short.
SEND_WORK = {
    "push": "feed-worker publish update --feed ID items.json (a JSON array of variants, "
            "for a feed with resource_type 'webhook')",
    "pull": "feed-worker publish pull --feed ID (or feed-worker import --feed ID: here, "
            "without the broker)",
    "publish_yourself": f"exchange '{C.EXCHANGE}' (topic, durable), routing key "
                        f"'{C.ROUTING_UPDATE}' with {{\"feedId\": ID, \"variants\": [...]}} "
                        f"or '{C.ROUTING_PULL}' with {{\"feedId\": ID}}; content_type "
                        "application/json, persistent, a unique message_id, mandatory with "
                        f"publisher confirms; an update's order time in a "
                        f"'{C.HEADER_TIMESTAMP_MS}' header (or each variant's "
                        "inventoryUpdatedAt)",
    "outcomes": "the table feed_runs, a row per run (status, rows_read, inserted, updated, "
                "unchanged, rejected, error; inventory_feed_id = ID), and the rejected rows "
                "in feed_run_rejects",
    "dead_letters": f"feed-worker replay list (the queue {C.QUEUE_DEAD_LETTER})",
}


class Daemon:
    def __init__(self, settings: Settings, *, handle_signals: bool = True) -> None:
        self.settings = settings
        self.handle_signals = handle_signals
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()  # set once it consumes
        self.pool: asyncpg.Pool | None = None
        self.connection: AbstractRobustConnection | None = None
        self.runner: PullRunner | None = None
        self.pusher: PushConsumer | None = None
        self.scheduler: Scheduler | None = None
        self.notifier: Notifier | None = None
        self._side: list[asyncio.Task[Any]] = []
        self._http: web.AppRunner | None = None
        self.systemd = sdnotify.Notifier()  # systemd's Type=notify; nothing without it

    def stop(self) -> None:
        """Ask for a graceful stop; safe to call any number of times, from a signal too."""
        if not self.stopping.is_set():
            log.info("daemon.stopping")
        self.stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        try:
            return await self._serve()
        finally:
            await self._close()

    async def _serve(self) -> int:
        s = self.settings
        self.pool = await db.create_pool(s.database_url, size=s.db_pool_size,
                                         keep_sessions=True)
        self.connection = await broker.connect(s.amqp_url)
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=s.pull_concurrency)
        topology = await broker.declare(channel, s.delivery_limit)
        async def announce(body: bytes) -> None:
            await topology.exchange.publish(broker.json_message(body),
                                            routing_key=C.ROUTING_RUN_COMPLETED)

        self.notifier = notifier = Notifier(self.pool, s)
        self.runner = runner = PullRunner(self.pool, s, announce, notifier)

        pull_queue = topology.queues[C.QUEUE_PULL]

        async def on_pull(message: AbstractIncomingMessage) -> None:
            await broker.deliver(topology, message, runner.handle_message, C.QUEUE_PULL)

        # Pushes get a channel of their own: a deep prefetch to fill micro-batches.
        push_channel = await self.connection.channel(publisher_confirms=True)
        await push_channel.set_qos(prefetch_count=s.push_prefetch)
        push_topology = broker.Topology(push_channel, topology.exchange,
                                        await push_channel.get_exchange(C.DEAD_LETTER_EXCHANGE),
                                        topology.queues)
        # (its deliveries reach the push consumer as they came: broker.Delivery)
        update_queue = await broker.delivery_queue(push_channel, C.QUEUE_UPDATE)
        push_tag: list[str] = []

        async def pause_pushes() -> None:  # messages held stay held: nothing is requeued
            if push_tag:
                await update_queue.cancel(push_tag.pop())

        async def resume_pushes() -> None:
            if not push_tag and not self.stopping.is_set():
                push_tag.append(await broker.consume_deliveries(update_queue, pusher.on_message))

        self.pusher = pusher = PushConsumer(self.pool, s, push_topology,
                                            Consumption(pause_pushes, resume_pushes))
        push_tag.append(await broker.consume_deliveries(update_queue, pusher.on_message))
        consumers = [(pull_queue, await pull_queue.consume(on_pull))]
        self._watch("collector", gcpause.collect_periodically)
        self._watch("reaper", runner.reaper)
        self._watch("notifier", notifier.run)
        self._watch("pusher", pusher.run)
        self._watch("message-retention", pusher.forget_old_messages)
        pool = self.pool
        self._watch("history-retention", lambda: retention.run(pool, s))
        if s.scheduler:
            # Pull-requests of due feeds go out on the confirmed channel, like announcements.
            self.scheduler = Scheduler(s, topology.exchange, notifier.check_stale)
            self._watch("scheduler", self.scheduler.run)
        connection = self.connection
        with contextlib.suppress(Exception):  # the side task logs why, if it cannot
            await asyncio.wait_for(gauges.read_queues(connection), 10.0)
        self._watch("gauges", lambda: gauges.refresh(connection, pool, self._leading,
                                                    s.metrics_refresh_s))
        if self.systemd.enabled and self.systemd.watchdog_s is not None:
            self._watch("watchdog", self._ping_watchdog)
        if s.http_port:
            self._http = await health.start(s.http_host, s.http_port, self._ready)
        log.info(
            "daemon.started", version=__version__, worker_id=s.worker_id,
            database=mask(s.database_url), amqp=mask(s.amqp_url),
            health=f"http://{s.http_host}:{s.http_port}/healthz" if s.http_port else None,
            scheduler="on: feeds with automated_fetching = 'enabled' are pulled when due, a "
                      "new one at once" if s.scheduler else "off",
        )
        log.info("daemon.send_work", **SEND_WORK)
        self.started.set()
        self.systemd.ready(f"consuming {C.QUEUE_PULL} and {C.QUEUE_UPDATE}")
        exit_code = await self._wait()
        self.systemd.stopping()
        if self.scheduler is not None:
            await self.scheduler.stop()  # no new pull-requests from a replica that drains
        for queue, tag in consumers:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        with contextlib.suppress(Exception):
            await pause_pushes()
        await asyncio.gather(runner.drain(s.shutdown_grace_s), pusher.drain(s.shutdown_grace_s))
        await notifier.drain(s.shutdown_grace_s)  # what the last runs made, sent if it can be
        log.info("daemon.stopped", exit_code=exit_code)
        return exit_code

    async def _wait(self) -> int:
        stop = asyncio.create_task(self.stopping.wait(), name="stop-signal")
        try:
            done, _ = await asyncio.wait({stop, *self._side}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for task in done:
            if task is not stop:
                exc = task.exception() if not task.cancelled() else None
                log.error("daemon.side_task_died", task=task.get_name(),
                          error=f"{type(exc).__name__}: {exc}" if exc else "returned")
                return 1
        return 0

    def _leading(self) -> bool:
        return self.scheduler is not None and self.scheduler.leading

    async def _ping_watchdog(self) -> None:
        """Side task: WATCHDOG=1 at half systemd's period, from the event loop, so a loop
        that is stuck misses it and systemd restarts the service."""
        assert self.systemd.watchdog_s is not None
        while True:
            self.systemd.watchdog()
            await asyncio.sleep(self.systemd.watchdog_s)

    def _watch(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            while True:
                try:
                    await body()
                    return  # a side task that ends by itself is done (it stops on drain)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("side_task.retry", task=name, error=str(exc))
                    await asyncio.sleep(2.0)

        self._side.append(asyncio.create_task(guarded(), name=name))

    async def _ready(self) -> list[str]:
        problems = []
        if self.connection is None or self.connection.is_closed:
            problems.append("rabbitmq: not connected")
        if self.pool is not None:
            try:
                await asyncio.wait_for(db.ping(self.pool), 2.0)
            except Exception as exc:
                problems.append(f"postgres: {type(exc).__name__}")
        return problems

    async def _close(self) -> None:
        for task in self._side:
            task.cancel()
        await asyncio.gather(*self._side, return_exceptions=True)
        if self._http is not None:
            await self._http.cleanup()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        if self.pool is not None:
            await self.pool.close()
