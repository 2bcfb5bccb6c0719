"""A RabbitMQ connection over the nodes of a cluster: aio-pika's RobustConnection, whose
every connection attempt goes through the nodes in turn.

RobustConnection reconnects to its one URL and then restores its channels (exchanges,
queues, bindings and consumers declared on them). This class gives each attempt the node
after the one that went away first, then the others, the lost one last; the first that
answers and takes the channels back is kept. Only when none does is the attempt a failure
(RobustConnection tries again after its `reconnect_interval`; the first connect raises).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aio_pika.abc import TimeoutType
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, AMQPConnectionError
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from worker import logs
from worker.urls import mask, scrub, several

log = logs.get(__name__)

# RobustConnection's one attempt to connect (aio-pika 10.2+: `__connect_transport`,
# name-mangled). Overriding it is how a subclass chooses the URL of each attempt.
_ATTEMPT = "_RobustConnection__connect_transport"
_robust_attempt = getattr(RobustConnection, _ATTEMPT, None)
if _robust_attempt is None:  # pragma: no cover - an aio-pika without the hook
    raise ImportError("aio-pika 10.2 or later is needed (RobustConnection."
                      "__connect_transport): pip install 'aio-pika>=10.2'")


class NoNodeAnswered(AMQPConnectionError):
    """No node of the list answered; the message names each, masked, with its error."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no RabbitMQ node answered"


def nodes(text: str) -> list[URL]:
    """The nodes of AMQP_URL: one URL, or several separated by commas."""
    return [URL(u) for u in several(text)]


class FailoverConnection(RobustConnection):
    """RobustConnection over several nodes (`nodes`); `url` is the node in use."""

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, *,
                 nodes: Sequence[URL] = (), **kwargs: Any) -> None:
        super().__init__(url, loop=loop, **kwargs)
        self.nodes: tuple[URL, ...] = tuple(nodes) or (self.url,)
        self.node_index = 0  # the node in use, or being tried
        self._in_use = 0  # the node the last connection was made to
        self.failovers = 0  # connections made to another node than the one before
        self.attempt_timeout_s = 30.0  # one node's connection and restored channels
        self._attempts = 0

    async def connect(self, timeout: TimeoutType = None) -> None:  # noqa: ASYNC109 - aio-pika's signature
        if timeout:
            self.attempt_timeout_s = 2 * float(timeout)
        await super().connect(timeout)

    async def leave_node(self) -> None:
        """Drop the connection to the node in use (one that stopped confirming, say): it
        moves on to the next node as when its node goes away."""
        transport = self.transport
        if transport is not None and not transport.connection.is_closed:
            log.warning("broker.leaving_node", node=mask(self.url))
            await transport.connection.close(ConnectionError("left an unresponsive node"))

    def _order(self) -> list[int]:
        """The first attempt: the nodes in their order. Later ones: the node after the one
        in use first, the one in use last (it may have come back)."""
        n = len(self.nodes)
        start = 0 if self._attempts == 0 else self.node_index + 1
        return [(start + i) % n for i in range(n)]

    async def _attempt_nodes(self) -> None:
        failures: list[str] = []
        first = self._attempts == 0
        previous = self._in_use
        for index in self._order():
            # Set before the attempt: connect() may return as soon as it succeeds.
            self.node_index, self.url = index, self.nodes[index]
            try:
                # A node that takes the TCP connection but hangs (shutting down, say)
                # while the channels are restored is left for the next.
                await asyncio.wait_for(_robust_attempt(self), self.attempt_timeout_s)  # type: ignore[misc]
            except CONNECTION_EXCEPTIONS as exc:
                await self._drop_transport()
                shown = mask(self.url)
                failures.append(f"{shown}: {type(exc).__name__}: "
                                f"{scrub(str(exc), str(self.url))}")
                log.info("broker.node_unavailable", node=shown, error=failures[-1])
                continue
            self._attempts += 1
            self._in_use = index
            if not first:
                self.failovers += index != previous
                log.warning("broker.reconnected", node=mask(self.url),
                            previous=mask(self.nodes[previous]))
            return
        self._attempts += 1
        raise NoNodeAnswered("no RabbitMQ node answered: " + "; ".join(failures))

    async def _drop_transport(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            await asyncio.gather(transport.connection.close(), return_exceptions=True)


setattr(FailoverConnection, _ATTEMPT, FailoverConnection._attempt_nodes)


async def connect(text: str, timeout_s: float = 10.0,
                  reconnect_interval_s: float = 2.0) -> FailoverConnection:
    """A connection to the first node of AMQP_URL that answers (each gets `timeout_s`),
    kept to one of them: when its node goes away it moves to another and restores its
    channels. NoNodeAnswered (or another aio-pika connection error) when none answers."""
    urls = nodes(text)
    connection = FailoverConnection(urls[0], nodes=urls, reconnect_interval=reconnect_interval_s)
    try:
        await connection.connect(timeout=timeout_s)
    except BaseException:
        await connection.close()
        raise
    return connection
