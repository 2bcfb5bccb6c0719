"""How the push consumer closes its groups (no broker, no database): a lone message is a
group at once, a burst is folded into one, and a group keeps collecting while the
transaction before it runs."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.support.wait import until
from worker import pusher
from worker.pusher import PushConsumer
from worker.settings import Settings


class Delivery:
    """What the consumer reads of an aio-pika message."""

    def __init__(self, n: int) -> None:
        self.body = orjson.dumps({"feedId": 1, "variants": [{"externalId": f"E{n}",
                                                              "inventoryQuantity": n}]})
        self.headers: dict[str, Any] = {}
        self.message_id = f"m{n}"
        self.delivery_tag = n + 1


def consumer(**changes: Any) -> PushConsumer:
    return PushConsumer(None, replace(Settings(), **changes), None)  # type: ignore[arg-type]


def ids(messages: list[Any]) -> list[str]:
    return [m.message_id for m in messages]


async def handed_over(c: PushConsumer) -> bool:
    return c.inbox.empty()


async def test_a_lone_message_is_a_group_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default settings (a batch wait of 20 ms): no clock is waited for."""
    async def clock(*_: Any, **__: Any) -> None:
        raise AssertionError("the group waited for the clock")

    monkeypatch.setattr(pusher.asyncio, "wait_for", clock)
    c = consumer()
    assert c.settings.push_batch_wait_s > 0
    await c.on_message(Delivery(1))  # type: ignore[arg-type]
    messages, group = await c._collect(None)
    assert ids(messages) == ["m1"]
    assert group.variants == 1


async def test_a_burst_still_passing_through_the_client_is_one_group() -> None:
    """Deliveries reach on_message through a few tasks (frames, channel, consumer): those
    already received when the group would close are folded into it."""
    c = consumer()
    tasks: list[asyncio.Future[None]] = []

    def deliver(n: int) -> None:  # as aiormq and aio-pika hand a delivery over
        async def consume() -> None:
            await asyncio.ensure_future(c.on_message(Delivery(n)))  # type: ignore[arg-type]

        tasks.append(asyncio.ensure_future(consume()))

    await c.on_message(Delivery(0))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for n in range(1, 20):
        loop.call_soon(deliver, n)
    messages, group = await c._collect(None)
    await asyncio.gather(*tasks)
    assert ids(messages) == [f"m{n}" for n in range(20)]
    assert group.variants == 20


async def test_a_group_collects_while_the_transaction_before_it_runs() -> None:
    c = consumer()
    committing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await c.on_message(Delivery(1))  # type: ignore[arg-type]
    collecting = asyncio.ensure_future(c._collect(committing))
    await until(lambda: handed_over(c), what="the first message taken")
    for n in (2, 3):
        await c.on_message(Delivery(n))  # type: ignore[arg-type]
        await until(lambda: handed_over(c), what=f"message {n} taken")
    assert not collecting.done()  # the transaction in flight holds the group open
    committing.set_result(None)
    messages, _ = await asyncio.wait_for(collecting, 5.0)
    assert ids(messages) == ["m1", "m2", "m3"]


def stream(c: PushConsumer, count: int) -> list[asyncio.Future[None]]:
    """Messages 1..count, one a turn of the event loop: a stream that keeps coming."""
    tasks: list[asyncio.Future[None]] = []

    async def deliver() -> None:
        for n in range(1, count + 1):
            await asyncio.sleep(0)
            await c.on_message(Delivery(n))  # type: ignore[arg-type]

    tasks.append(asyncio.ensure_future(deliver()))
    return tasks


async def test_a_stream_that_keeps_coming_is_taken_on_until_the_batch_wait() -> None:
    c = consumer(push_batch_wait_s=3600.0)
    await c.on_message(Delivery(0))  # type: ignore[arg-type]
    tasks = stream(c, 30)
    messages, _ = await c._collect(None)
    await asyncio.gather(*tasks)
    assert ids(messages) == [f"m{n}" for n in range(31)]


async def test_without_a_batch_wait_a_stream_is_cut_at_its_first_pause() -> None:
    c = consumer(push_batch_wait_s=0.0)
    await c.on_message(Delivery(0))  # type: ignore[arg-type]
    tasks = stream(c, 30)
    first, _ = await c._collect(None)
    second, _ = await c._collect(None)
    await asyncio.gather(*tasks)
    assert ids(first) == ["m0"]
    assert ids(second)[0] == "m1"
