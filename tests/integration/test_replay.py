"""`feed-worker replay list|requeue` through the real command, against real RabbitMQ and
Postgres: selection, dry runs, the headers a replay sends, the report and exit codes."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from tests.support import broker, feeds
from tests.support import deadletters as dl
from tests.support.commands import feed_worker
from tests.support.services import dsn_for
from tests.support.wait import until
from worker import constants as C
from worker.settings import Settings


@pytest.fixture
async def topology(clean_broker: None) -> None:
    await dl.declare_topology()


def _update(feed_id: int, external_id: str = "X", quantity: int = 1) -> bytes:
    return orjson.dumps({"feedId": feed_id,
                         "variants": [{"externalId": external_id,
                                       "inventoryQuantity": quantity}]})


async def _fill(*ids: str, reason: str = "feed 1 is disabled") -> None:
    for i in ids:
        await dl.put(_update(1, i), i, dl.worker_headers(reason))


def _lines(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines()]


async def test_several_ids_after_one_flag_and_the_flag_repeated(topology: None) -> None:
    await _fill("a", "b", "c", "d", "e")
    # Not waiting, it needs no database.
    code, out, err = await feed_worker("replay", "requeue", "--message-id", "a", "c",
                                       "--message-id", "e", "--no-wait",
                                       database_url=dsn_for("no_such_db_here"))
    assert code == 0, err
    assert _lines(out)[:3] == [["a", "sent"], ["c", "sent"], ["e", "sent"]]
    assert out.splitlines()[3].startswith("sent 3 (replay ")
    assert await dl.ids_in(C.QUEUE_UPDATE) == ["a", "c", "e"]  # in their order
    assert await dl.ids_in() == ["b", "d"]


async def test_an_id_not_found_is_reported_and_fails(topology: None, db_url: str) -> None:
    await _fill("a")
    code, out, _ = await feed_worker("replay", "requeue", "--message-id", "a", "zz",
                                     "--no-wait", database_url=db_url)
    assert code == 1
    assert ["zz", "not found"] in _lines(out)
    assert await dl.ids_in(C.QUEUE_UPDATE) == ["a"]


async def test_filters_select_by_reason_feed_and_age(topology: None, db_url: str) -> None:
    now = datetime.now(UTC)
    await dl.put(_update(1), "old-disabled",
                 dl.worker_headers("feed 1 is Disabled", dead_lettered_at=now - timedelta(hours=3)))
    await dl.put(_update(2), "new-schema", dl.worker_headers("variants must be a non-empty array"))
    await dl.put(b"{not json", "not-json", dl.worker_headers("message is not JSON"))
    await dl.put_by_broker(_update(2), "broker-fresh")
    # A broker dead letter from long ago: its age comes from the earliest x-death time.
    deaths = [{"reason": "delivery_limit", "queue": C.QUEUE_UPDATE, "count": 1,
               "time": now - timedelta(minutes=30)},
              {"reason": "delivery_limit", "queue": C.QUEUE_UPDATE, "count": 1,
               "time": now - timedelta(days=2)}]
    await dl.put(_update(1), "broker-old", {C.HEADER_DEATH: deaths})
    everything = ["old-disabled", "new-schema", "not-json", "broker-fresh", "broker-old"]

    async def listed(*args: str) -> list[str]:
        code, out, err = await feed_worker("replay", "list", *args, database_url=db_url)
        assert code == 0, err
        return [line[0] for line in _lines(out)]

    assert await listed() == everything
    assert await listed("--reason", "DISABLED") == ["old-disabled"]
    assert await listed("--reason", "broker:") == ["broker-fresh", "broker-old"]
    assert await listed("--reason", "expired") == ["broker-fresh"]  # its TTL ran out
    assert await listed("--feed", "2") == ["new-schema", "broker-fresh"]
    assert await listed("--feed", "1") == ["old-disabled", "broker-old"]  # never not-json
    assert await listed("--older-than", "2h") == ["old-disabled", "broker-old"]
    assert await listed("--older-than", "1d") == ["broker-old"]
    assert await listed("--older-than", "90s", "--feed", "1", "--reason", "disabled") == [
        "old-disabled"]
    assert await listed("--limit", "2") == everything[:2]
    assert await listed("--message-id", "not-json", "broker-old") == ["not-json", "broker-old"]
    code, _, err = await feed_worker("replay", "list", "--older-than", "2 weeks",
                                     database_url=db_url)
    assert code == 2
    assert "not a duration like 90s, 30m, 2h or 7d" in err
    # The same filters choose what requeue sends; listing left the queue as it was.
    code, out, err = await feed_worker("replay", "requeue", "--feed", "2", "--reason", "broker",
                                       "--no-wait", database_url=db_url)
    assert code == 0, err
    assert _lines(out)[0] == ["broker-fresh", "sent"]
    assert await dl.ids_in(C.QUEUE_UPDATE) == ["broker-fresh"]
    assert await dl.ids_in() == [i for i in everything if i != "broker-fresh"]


async def test_dry_run_sends_nothing_and_leaves_the_queue_as_it_was(
        topology: None, db_url: str) -> None:
    ids = [f"m{i}" for i in range(8)]
    for i in ids:
        reason = "feed 3 is disabled" if i in ("m2", "m5") else "breaks the schema"
        await dl.put(_update(3, i), i, dl.worker_headers(reason))
    # No database is needed for a dry run.
    code, out, err = await feed_worker("replay", "requeue", "--reason", "disabled", "--dry-run",
                                       database_url=dsn_for("no_such_db_here"))
    assert code == 0, err
    assert _lines(out) == [["m2", "would send to feed.update", "feed 3 is disabled"],
                           ["m5", "would send to feed.update", "feed 3 is disabled"],
                           ["dry run: would send 2 message(s); nothing was sent"]]
    code, out, err = await feed_worker("replay", "requeue", "--dry-run", database_url=db_url)
    assert code == 0, err
    assert len(out.splitlines()) == 9
    assert await dl.depth(C.QUEUE_UPDATE) == 0
    assert await dl.ids_in() == ids  # every one, in the same order


async def test_replayed_headers_keep_order_times_drop_dead_letter_ones_add_replay_id(
        topology: None, db_url: str) -> None:
    first = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    sent_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await dl.put_by_broker(_update(1, "B"), "by-broker")
    [broker_letter] = await _peek()
    death_time = broker_letter.headers[C.HEADER_DEATH][0]["time"]  # type: ignore[index]
    await dl.put(_update(1, "W"), "by-worker", dl.worker_headers(
        "feed 1 is disabled", first_received=first, **{
            C.HEADER_TIMESTAMP_MS: 1767323045000, C.HEADER_REPLAY_ID: "an-earlier-replay",
            "x-tenant": "acme", "trace": "t-1"}),
        timestamp=sent_at, correlation_id="corr-1")
    code, out, err = await feed_worker("replay", "requeue", "--no-wait", database_url=db_url)
    assert code == 0, err
    replay_id = re.search(r"\(replay ([0-9a-f-]{36});", out)[1]  # type: ignore[index]
    broker_copy, worker_copy = await dl.take(C.QUEUE_UPDATE, 2)
    assert worker_copy.message_id == "by-worker"
    assert worker_copy.routing_key == C.ROUTING_UPDATE
    assert worker_copy.timestamp == sent_at
    assert worker_copy.correlation_id == "corr-1"
    assert worker_copy.delivery_mode == 2
    assert _sent_headers(worker_copy) == {
        C.HEADER_TIMESTAMP_MS: 1767323045000,
        C.HEADER_FIRST_RECEIVED: first.isoformat(),
        C.HEADER_REPLAY_ID: replay_id,
        "x-tenant": "acme",  # a publisher's own header is not a dead-letter header
        "trace": "t-1",
    }
    assert broker_copy.message_id == "by-broker"
    assert broker_copy.routing_key == C.ROUTING_UPDATE
    assert set(_sent_headers(broker_copy)) == {C.HEADER_FIRST_RECEIVED, C.HEADER_REPLAY_ID}
    # Not brand new: it counts from when the broker first dead-lettered it.
    got = datetime.fromisoformat(str(broker_copy.headers[C.HEADER_FIRST_RECEIVED]))
    assert got == death_time.replace(tzinfo=UTC)
    assert broker_copy.headers[C.HEADER_REPLAY_ID] == replay_id
    uuid.UUID(replay_id)
    assert await dl.depth() == 0


def _sent_headers(message: dl.AbstractIncomingMessage) -> dict[str, object]:
    """The headers a message was published with (not the one its quorum queue adds when
    it delivers it)."""
    return {k: v for k, v in message.headers.items() if k != C.HEADER_DELIVERY_COUNT}


async def _peek() -> list[dl.AbstractIncomingMessage]:
    """The dead letters, left in the queue in their order (with their headers, body and
    message id: nothing else of theirs is put back)."""
    messages = await dl.take(C.QUEUE_DEAD_LETTER, await dl.depth())
    for m in messages:
        await dl.put(m.body, m.message_id, dict(m.headers), m.routing_key or "")
    return messages


async def test_an_unroutable_message_stays_dead_lettered_and_fails(topology: None,
                                                                   db_url: str) -> None:
    await dl.put(_update(1), "nowhere", dl.worker_headers("x", routing_key="feed.nowhere"))
    await _fill("fine")
    code, out, _ = await feed_worker("replay", "requeue", "--no-wait", database_url=db_url)
    assert code == 1
    lines = _lines(out)
    assert lines[0][:2] == ["nowhere", "not sent"]
    assert "NO_ROUTE" in lines[0][2]
    assert lines[1] == ["fine", "sent"]
    assert lines[-1] == ["not sent 1: still in inventory.dead-letter"]
    assert await dl.ids_in() == ["nowhere"]
    assert await dl.ids_in(C.QUEUE_UPDATE) == ["fine"]


async def _record_outcomes(db_url: str, n: int, outcomes: dict[str, tuple[object, ...]]) -> str:
    """Stand in for the daemon: take the n replayed feed-updates off their queue and record
    the given outcomes (message id -> outcome, variants, applied, stale, rejected, reason)
    under the replay id they carry."""
    messages = await dl.take(C.QUEUE_UPDATE, n)
    replay_ids = {str(m.headers[C.HEADER_REPLAY_ID]) for m in messages}
    assert len(replay_ids) == 1
    [replay_id] = replay_ids
    conn = await asyncpg.connect(db_url)
    try:
        for m in messages:
            if m.message_id in outcomes:
                await conn.execute(
                    "INSERT INTO replay_outcomes (replay_id, message_id, outcome, variants, "
                    "applied, stale, rejected, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    replay_id, m.message_id, *outcomes[m.message_id])
    finally:
        await conn.close()
    return replay_id


async def test_report_of_recorded_outcomes_and_exit_0(topology: None, db_url: str) -> None:
    await _fill("ok", "old", "bad", "again")
    await dl.put(b'{"feedId": 1, "force": false}', "pull-1",
                 dl.worker_headers("feed 1 is disabled", routing_key=C.ROUTING_PULL),
                 routing_key=C.ROUTING_PULL)
    command = asyncio.create_task(feed_worker("replay", "requeue", "--wait", "30",
                                              database_url=db_url))
    replay_id = await _record_outcomes(db_url, 4, {
        "ok": ("applied", 3, 3, 0, 0, None),
        "old": ("stale", 2, 1, 1, 0, None),
        "bad": ("rejected", 1, 0, 0, 1, "inventoryQuantity must be a whole number"),
        "again": ("repeat", 1, 0, 0, 0, None),
    })
    code, out, err = await command
    assert code == 0, err
    assert _lines(out) == [
        ["ok", "applied", "variants=3 applied=3 stale=0 rejected=0"],
        ["old", "stale", "variants=2 applied=1 stale=1 rejected=0"],
        ["bad", "rejected", "variants=1 applied=0 stale=0 rejected=1",
         "inventoryQuantity must be a whole number"],
        ["again", "repeat", "variants=1 applied=0 stale=0 rejected=0"],
        ["pull-1", "sent (pull)"],
        ["sent 5: applied 1, stale 1, rejected 1, repeat 1, dead-lettered again 0, pending 0, "
         f"pull 1 (replay {replay_id})"],
    ]
    assert "waiting up to 30 s for the outcomes of 4" in err
    assert await dl.ids_in(C.QUEUE_PULL) == ["pull-1"]
    assert await dl.depth() == 0


async def test_dead_lettered_again_or_pending_exits_1(topology: None, db_url: str) -> None:
    await _fill("ok", "dead", "silent")
    command = asyncio.create_task(feed_worker("replay", "requeue", "--wait", "2",
                                              database_url=db_url))
    replay_id = await _record_outcomes(db_url, 3, {
        "ok": ("applied", 1, 1, 0, 0, None),
        "dead": ("dead-lettered", 0, 0, 0, 0, "feed 1 is disabled"),
    })
    code, out, _ = await command
    assert code == 1
    assert _lines(out) == [
        ["ok", "applied", "variants=1 applied=1 stale=0 rejected=0"],
        ["dead", "dead-lettered again", "feed 1 is disabled"],
        ["silent", "pending", "no outcome recorded within 2 s"],
        ["sent 3: applied 1, stale 0, rejected 0, repeat 0, dead-lettered again 1, pending 1 "
         f"(replay {replay_id})"],
    ]


async def test_without_the_dead_letter_queue_the_commands_say_what_to_do(
        clean_broker: None, db_url: str) -> None:
    for command in ("list", "requeue"):
        code, out, err = await feed_worker("replay", command, "--no-wait"
                                           if command == "requeue" else "--limit=5",
                                           database_url=db_url)
        assert (code, out) == (2, ""), err  # could not start: nothing was done
        assert "there is no queue inventory.dead-letter (start `feed-worker run`" in err


async def test_waiting_needs_the_database_before_anything_is_sent(topology: None,
                                                                  db_url: str) -> None:
    await _fill("a", "b")
    code, out, err = await feed_worker("replay", "requeue",
                                       database_url=dsn_for("no_such_db_here"))
    assert code == 2  # could not start: nothing was sent
    assert "does not exist" in err
    assert out == ""
    assert await dl.ids_in() == ["a", "b"]


async def test_with_the_daemon_an_older_update_is_stale_and_each_outcome_reported(
        clean_broker: None, pool: asyncpg.Pool, db_url: str, settings: Settings) -> None:
    """The issue's case: updates dead-lettered while their feed was disabled are replayed
    after newer ones landed; the newer values stay, and the report says so."""
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook", enabled=False)
    other = await feeds.make_feed(pool, None, resource_type="webhook", enabled=False)
    async with broker.running_daemon(settings):
        await broker.publish(_update(feed_id, "X", 1), C.ROUTING_UPDATE, "old-x")
        await broker.publish(_update(feed_id, "Y", 5), C.ROUTING_UPDATE, "only-y")
        await broker.publish(_update(other, "Z", 7), C.ROUTING_UPDATE, "still-disabled")
        await until(lambda: dl.depth_is(3), what="three dead letters")
    await pool.execute("UPDATE inventory_feeds SET enabled = true WHERE id = $1", feed_id)
    async with broker.running_daemon(settings):
        await broker.publish(_update(feed_id, "X", 9), C.ROUTING_UPDATE, "new-x")

        async def x_is_9() -> bool:
            x = (await feeds.items(pool, feed_id)).get("X")
            return x is not None and x["inventory_quantity"] == 9

        await until(x_is_9, what="the newer update of X")
        code, out, err = await feed_worker("replay", "requeue", "--wait", "30",
                                           database_url=db_url)
    lines = _lines(out)
    assert lines[:3] == [
        ["old-x", "stale", "variants=1 applied=0 stale=1 rejected=0"],
        ["only-y", "applied", "variants=1 applied=1 stale=0 rejected=0"],
        ["still-disabled", "dead-lettered again", f"feed {other} is disabled"],
    ], (out, err)
    assert re.fullmatch(r"sent 3: applied 1, stale 1, rejected 0, repeat 0, dead-lettered "
                        r"again 1, pending 0 \(replay [0-9a-f-]{36}\)", lines[3][0]), out
    assert code == 1  # one was dead-lettered again
    got = await feeds.items(pool, feed_id)
    assert {k: v["inventory_quantity"] for k, v in got.items()} == {"X": 9, "Y": 5}
    assert await dl.ids_in() == ["still-disabled"]


async def test_with_the_daemon_a_replay_of_many_older_updates_sets_nothing_back(
        clean_broker: None, pool: asyncpg.Pool, db_url: str, settings: Settings) -> None:
    """The issue at a smaller scale: 30 dead-lettered messages of 10 items each, replayed
    after newer values of all 300 items landed, leave every item at its newer value."""
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook", enabled=False)

    def body(first: int, quantity: int) -> bytes:
        return orjson.dumps({"feedId": feed_id, "variants": [
            {"externalId": f"I{i}", "inventoryQuantity": quantity}
            for i in range(first, first + 10)]})

    async with broker.running_daemon(settings):
        for m in range(30):
            await broker.publish(body(m * 10, 1), C.ROUTING_UPDATE, f"old-{m}")
        await until(lambda: dl.depth_is(30), what="30 dead letters")
        await pool.execute("UPDATE inventory_feeds SET enabled = true WHERE id = $1", feed_id)
        for m in range(30):
            await broker.publish(body(m * 10, 9), C.ROUTING_UPDATE, f"new-{m}")
        await until(lambda: _all_at(pool, feed_id, 300, 9), what="the newer values")
        code, out, err = await feed_worker("replay", "requeue", "--wait", "30",
                                           database_url=db_url)
    assert code == 0, (out, err)
    lines = _lines(out)
    assert lines[:30] == [[f"old-{m}", "stale", "variants=10 applied=0 stale=10 rejected=0"]
                          for m in range(30)]
    assert lines[30][0].startswith("sent 30: applied 0, stale 30, rejected 0, repeat 0, "
                                   "dead-lettered again 0, pending 0 (replay ")
    assert await _all_at(pool, feed_id, 300, 9)
    assert await dl.depth() == 0


async def _all_at(pool: asyncpg.Pool, feed_id: int, n: int, quantity: int) -> bool:
    got = await feeds.items(pool, feed_id)
    return len(got) == n and all(v["inventory_quantity"] == quantity for v in got.values())


async def test_with_the_daemon_an_already_applied_message_is_a_repeat(
        clean_broker: None, pool: asyncpg.Pool, db_url: str, settings: Settings) -> None:
    feed_id = await feeds.make_feed(pool, None, resource_type="webhook")
    async with broker.running_daemon(settings):
        await broker.publish(_update(feed_id, "R", 2), C.ROUTING_UPDATE, "twice")
        await until(lambda: _has_item(pool, feed_id, "R"), what="the first delivery applied")
        # The same message dead-lettered as well (say, a copy that failed elsewhere).
        await dl.put(_update(feed_id, "R", 2), "twice", dl.worker_headers("timed out"))
        code, out, err = await feed_worker("replay", "requeue", "--wait", "5",
                                           database_url=db_url)
    assert _lines(out)[0] == ["twice", "repeat", "variants=1 applied=0 stale=0 rejected=0"], (
        out, err)
    assert code == 0


async def _has_item(pool: asyncpg.Pool, feed_id: int, external_id: str) -> bool:
    return external_id in await feeds.items(pool, feed_id)
