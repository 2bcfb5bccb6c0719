"""What a quorum queue carries on a three-node RabbitMQ cluster of the test's own, against
the same queue with one member on the same nodes and on the machine's own broker (in a
vhost of the test's own): single-variant feed-update messages published with confirms
and consumed with acks at once, first publish to last ack, and the CPU each node of the
cluster spent a message (docs/scaling.md quotes them). The cluster's Erlang schedulers do
not busy-wait (`+sbwt none`): three nodes share two cores here."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import aio_pika
import pytest

from tests.faults.cluster import missing_tools
from tests.scale.brokercluster import BrokerCluster
from tests.support import services

LAST_RUN = Path(__file__).parent / "last-run.txt"
MESSAGES = int(os.environ.get("FEED_WORKER_SCALE_MESSAGES", "30000"))
IN_FLIGHT = 500  # publishes awaiting their confirm
BODY = (b'{"feedId": 1, "variants": [{"externalId": "SKU-000123", "inventoryQuantity": 7, '
        b'"retailPrice": "19.90", "inventoryUpdatedAt": "2026-12-05T10:15:00Z"}]}')
TICKS = os.sysconf("SC_CLK_TCK")
NO_BUSY_WAIT = "+sbwt none +sbwtdcpu none +sbwtdio none"
SHARED_VHOST = f"fw_scale_capacity_{os.getpid()}"


def _cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _carry(url: str, queue_name: str, members: int,
                 cluster: BrokerCluster | None) -> tuple[float, list[float]]:
    """Messages/s through the queue, and each node's CPU microseconds a message."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(queue_name, durable=True, arguments={
            "x-queue-type": "quorum", "x-quorum-initial-group-size": members})
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=2000)
        consumed = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1
            if consumed >= MESSAGES:
                done.set()

        source = await consumer_channel.get_queue(queue_name, ensure=False)
        nodes = cluster.nodes if cluster is not None else []
        before = [_cpu(n.pid()) for n in nodes]
        started = time.perf_counter()
        await source.consume(on_message)
        pending: set[asyncio.Future[object]] = set()
        for _ in range(MESSAGES):
            pending.add(asyncio.ensure_future(channel.default_exchange.publish(
                aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue_name)))
            if len(pending) >= IN_FLIGHT:
                finished, pending = await asyncio.wait(
                    pending, return_when=asyncio.FIRST_COMPLETED)
                for f in finished:
                    f.result()
        for confirm in await asyncio.gather(*pending):
            assert confirm is not None
        await asyncio.wait_for(done.wait(), timeout=300)
        seconds = time.perf_counter() - started
        after = [_cpu(n.pid()) for n in nodes]
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    assert consumed == MESSAGES
    return MESSAGES / seconds, [(b - a) / MESSAGES * 1e6 for a, b in zip(before, after,
                                                                          strict=True)]


async def test_what_a_quorum_queue_carries_on_three_nodes() -> None:
    missing = missing_tools() or BrokerCluster.ports_taken()
    if missing:
        pytest.fail(f"make scale cannot start its cluster: {missing}", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="fw-scale-capacity-"))
    cluster = BrokerCluster(base)
    for node in cluster.nodes:
        node.env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = NO_BUSY_WAIT
    services._rabbitmqctl("add_vhost", SHARED_VHOST)
    services._rabbitmqctl("set_permissions", "-p", SHARED_VHOST, "guest", ".*", ".*", ".*")
    shared = f"amqp://guest:guest@127.0.0.1:5672/{SHARED_VHOST}"
    rows: list[tuple[str, float, list[float]]] = []
    try:
        await asyncio.to_thread(cluster.start)
        url = cluster.url(0)
        for _ in range(2):  # alternating, against the machine's drift
            for label, where, members, nodes in (("shared node, 1 member", shared, 1, None),
                                                 ("cluster, 1 member", url, 1, cluster),
                                                 ("cluster, 3 members", url, 3, cluster)):
                rate, cpu = await _carry(where, f"capacity-{members}", members, nodes)
                rows.append((label, rate, cpu))
        assert not [q for q in cluster.queues() if q.startswith("capacity-")]  # deleted
    finally:
        await asyncio.to_thread(cluster.destroy)
        shutil.rmtree(base, ignore_errors=True)
        services._rabbitmqctl("delete_vhost", SHARED_VHOST)
    labels = list(dict.fromkeys(label for label, _, _ in rows))
    best = {k: max((r for r in rows if r[0] == k), key=lambda r: r[1]) for k in labels}
    lines = [f"broker capacity: a quorum queue, {MESSAGES:,} single-variant messages a round "
             f"(confirms, {IN_FLIGHT} in flight; acks), "
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
             f"  {'where':<22} {'msg/s (rounds)':<24} CPU us a message: leader, node 2, node 3"]
    for label in labels:
        rates = ", ".join(f"{r[1]:,.0f}" for r in rows if r[0] == label)
        spent = ", ".join(f"{c:.0f}" for c in best[label][2]) or "-"
        lines.append(f"  {label:<22} {best[label][1]:>7,.0f} ({rates}){'':<4} {spent}")
    three, one = best["cluster, 3 members"], best["cluster, 1 member"]
    lines.append(f"  3 members / 1 member on the cluster: {three[1] / one[1]:.2f} of the rate")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with LAST_RUN.open("a") as out:
        out.write(text + "\n")
    # every message went through, and the replicas cost the followers' nodes CPU
    assert three[2][1] > one[2][1]
