"""Fault injection against real processes: the daemon killed, the broker and Postgres
restarted, backends terminated, links black-holed, poison mixed in, graceful stops, and
a replay of the dead letters. Every scenario publishes to three feeds (inventoryUpdatedAt,
timestamp_in_ms, neither) and checks, for each, that nothing confirmed is lost, nothing
is overwritten by an older update, and no good message is dead-lettered."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime

import aio_pika
import asyncpg
import orjson

from tests.faults import cluster
from tests.faults.conftest import NOTES, Result, Scenario, Services
from tests.support.feedserver import FeedServer
from tests.support.proxy import Proxy
from tests.support.traffic import (
    BIN,
    KINDS,
    Dead,
    Observer,
    Publisher,
    Sent,
    dump_records,
    outcome,
    take_dead_letters,
    wait_settled,
    zero_problems,
)
from tests.support.wait import until
from worker import constants as C

RATE = 120.0  # messages per second while faults are injected (10-50 variants each)


async def finish(s: Scenario, publisher: Publisher, recover: list[float],
                 notes: str = "", check: bool = True) -> tuple[Result, list[Dead]]:
    """Stop publishing, let the daemon catch up, read the outcome; the zero checks
    (`check=False`: the caller makes them with its own, see zero_problems)."""
    await publisher.stop()
    await wait_settled(s.observer, publisher, s.amqp_url)
    dead = await take_dead_letters(s.amqp_url)
    await dump_records(s.observer, dead, s.records_path)
    rows = await outcome(s.observer, publisher, dead)
    result = s.record(rows, max(recover) if recover else None, notes)
    if check:
        problems = zero_problems(s.name, rows)
        assert not problems, problems
    return result, dead


async def first_group(s: Scenario) -> None:
    await until(lambda: s.observer.processed_count(), timeout_s=60, what="a first group")


async def test_kill_daemon(scenario: Scenario) -> None:
    """20 kill -9: 10 at random moments, 10 aimed between a group's commit and its ack."""
    s = scenario
    worker = s.worker()
    await worker.start()
    pub = s.publisher(seed=11)
    pub.start(RATE)
    await first_group(s)
    rng = random.Random(1)
    recover, aimed_hits = [], 0
    for i in range(20):
        if i % 2 == 0:
            await asyncio.sleep(rng.uniform(0.3, 2.0))  # load runs a random while
        else:
            # Aimed: a group just committed (its ids are remembered) and is being acked.
            before = await s.observer.processed_count()
            deadline = time.monotonic() + 10
            while await s.observer.processed_count() == before \
                    and time.monotonic() < deadline:
                pass
            aimed_hits += time.monotonic() < deadline
        t0 = time.time()
        await worker.kill()
        await worker.start()
        recover.append(await s.observer.recovered(t0))
    await finish(s, pub, recover, notes=f"aimed kills right after a commit: {aimed_hits}/10")


async def test_broker_restart(scenario: Scenario) -> None:
    """5 restarts of the RabbitMQ node under load."""
    s = scenario
    worker = s.worker()
    await worker.start()
    pub = s.publisher(seed=12)
    pub.start(RATE)
    await first_group(s)
    rng = random.Random(2)
    recover = []
    for _ in range(5):
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        t0 = time.time()
        await asyncio.to_thread(s.services.rabbit.stop)
        await asyncio.to_thread(s.services.rabbit.start)
        recover.append(await s.observer.recovered(t0, timeout_s=120))
        assert worker.proc is not None
        assert worker.proc.returncode is None, "the daemon exited when the broker restarted"
    await finish(s, pub, recover)


async def test_postgres_restart(scenario: Scenario) -> None:
    """5 restarts of Postgres under load, fast and immediate in turn."""
    s = scenario
    worker = s.worker()
    await worker.start()
    pub = s.publisher(seed=13)
    pub.start(RATE)
    await first_group(s)
    rng = random.Random(3)
    recover = []
    for i in range(5):
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        mode = "fast" if i % 2 == 0 else "immediate"
        t0 = time.time()
        await asyncio.to_thread(s.services.pg.stop, mode)
        await asyncio.sleep(rng.uniform(0.5, 3.0))  # down for a while, load goes on
        await asyncio.to_thread(s.services.pg.start)
        recover.append(await s.observer.recovered(t0, timeout_s=120))
        assert worker.proc is not None
        assert worker.proc.returncode is None, f"the daemon exited on a {mode} restart"
    await finish(s, pub, recover)


PHASES = {
    # phase: (what the backend is running, the fallback inside the group's transaction)
    "copy": "query ILIKE 'COPY%' AND state = 'active'",
    "merge": "query LIKE '%WITH runs AS%' AND state = 'active'",
    "commit": "query ILIKE 'COMMIT%' AND state = 'active'",
}


async def _terminate(observer: Observer, phase: str, within_s: float) -> bool:
    """Terminate a daemon backend in `phase`; True when caught there, False when the
    fallback (any backend inside a transaction) was terminated instead."""
    where = PHASES[phase]
    sql = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
           "current_database() AND pid <> pg_backend_pid() AND backend_type = "
           f"'client backend' AND application_name <> 'fw-faults-observer' AND {where}")
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await observer.fetch(sql, timeout_s=10):
            return True
    fallback = sql.replace(where, "state IN ('active', 'idle in transaction')")
    await until(lambda: observer.fetch(fallback, timeout_s=10), timeout_s=30,
                every_s=0.001, what=f"a daemon backend to terminate ({phase})")
    return False


async def test_terminate_backends(scenario: Scenario) -> None:
    """20 pg_terminate_backend of the daemon's backends: mid-COPY, mid-merge, on COMMIT."""
    s = scenario
    worker = s.worker()
    await worker.start()
    pub = s.publisher(seed=14)
    pub.start(RATE * 1.5)
    await first_group(s)
    recover, hits = [], dict.fromkeys(PHASES, 0)
    phases = list(PHASES)
    rng = random.Random(4)
    for i in range(20):
        phase = phases[i % 3]
        await asyncio.sleep(rng.uniform(0.3, 1.5))  # load runs a random while
        t0 = time.time()
        hits[phase] += await _terminate(s.observer, phase, within_s=4.0)
        recover.append(await s.observer.recovered(t0))
        assert worker.proc is not None
        assert worker.proc.returncode is None, "the daemon exited on a terminated backend"
    notes = "caught in phase: " + ", ".join(
        f"{p} {hits[p]}/{len([i for i in range(20) if phases[i % 3] == p])}" for p in PHASES)
    await finish(s, pub, recover, notes)


async def test_black_hole(scenario: Scenario) -> None:
    """The daemon's links to the broker and to Postgres black-holed (accepted, nothing
    forwarded, nothing closed) for longer than two AMQP heartbeats, then healed."""
    s = scenario
    amqp_proxy = Proxy("127.0.0.1", s.services.rabbit.port)
    pg_proxy = Proxy("127.0.0.1", s.services.pg.port)
    await amqp_proxy.start()
    await pg_proxy.start()
    try:
        worker = s.worker(
            database_url=s.services.pg.dsn(f"fw_{s.name}", port=pg_proxy.port),
            amqp_url=s.services.rabbit.url(s.name, port=amqp_proxy.port, query="heartbeat=5"))
        await worker.start()
        pub = s.publisher(seed=15)
        pub.start(RATE)
        await first_group(s)
        recover, rng = [], random.Random(5)
        for proxies in ([amqp_proxy], [pg_proxy], [amqp_proxy, pg_proxy]):
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            t0 = time.time()
            for p in proxies:
                p.blackhole()
            await asyncio.sleep(12.0)  # the outage itself: over two 5 s heartbeats
            for p in proxies:
                p.heal()
            recover.append(await s.observer.recovered(t0, timeout_s=120))
            assert worker.proc is not None
            assert worker.proc.returncode is None, "the daemon exited on a black hole"
        await finish(s, pub, recover)
    finally:
        await amqp_proxy.close()
        await pg_proxy.close()


async def test_poison(scenario: Scenario) -> None:
    """Poison mixed into normal traffic (prefetch 800): NUL in a name, an externalId and
    an extra field, a 3,000-character externalId, a message whose every variant is
    rejected (good messages: acked, rejects stored, neighbours land), a body that is not
    JSON and an unknown feed (bad: dead-lettered)."""
    s = scenario
    worker = s.worker()
    await worker.start()
    pub = s.publisher(seed=16)
    pub.start(RATE * 1.5, poison_every=7)
    await asyncio.sleep(25.0)  # traffic with poison throughout
    result, dead = await finish(s, pub, [], check=False)
    dead_ids = {d.message_id for d in dead}
    poison = [m for m in pub.sent if m.poison and m.confirmed]
    assert {m.poison for m in poison} == {"nul-name", "nul-external-id", "nul-extra",
                                          "oversized-external-id", "all-rejected",
                                          "not-json", "unknown-feed"}
    rejected = {r[0]: r[1] for r in await s.observer.fetch(
        "SELECT message_id, count(*) FROM feed_run_rejects GROUP BY message_id")}
    processed = {r[0] for r in await s.observer.fetch(
        "SELECT message_id FROM processed_messages WHERE message_id = ANY($1::text[])",
        [m.message_id for m in poison])}
    problems = []
    for m in poison:
        if not m.good:
            if m.message_id not in dead_ids:
                problems.append(f"{m.poison} {m.message_id} was not dead-lettered")
            continue
        if m.message_id in dead_ids:
            problems.append(f"{m.poison} {m.message_id} was dead-lettered")
        if m.message_id not in processed:
            problems.append(f"{m.poison} {m.message_id} was not applied")
        want = orjson.loads(m.body)["variants"]
        got = rejected.get(m.message_id, 0)
        expected = len(want) if m.poison == "all-rejected" else 1
        if got != expected:
            problems.append(f"{m.poison} {m.message_id}: {got} rejects, {expected} expected")
    for d in dead:
        if d.message_id in {m.message_id for m in poison if not m.good}:
            assert d.headers.get(C.HEADER_ERROR), f"dead letter {d.message_id} has no reason"
    wrong = Counter(re.sub(r"\d+", "N", " ".join(p.split()[:1] + p.split()[2:]))
                    for p in problems)
    result.notes = (f"poison confirmed: {len(poison)} ({sum(not m.good for m in poison)} bad); "
                    f"poison outcomes wrong: {dict(wrong) or 0}")
    problems = zero_problems(s.name, result.kinds) + problems
    assert not problems, f"{len(problems)} problems: {problems[:12]}"


async def test_sigterm_mid_group(scenario: Scenario) -> None:
    """SIGTERM while a group is in the database (graceful drain), then a restart; 5 times."""
    s = scenario
    worker = s.worker()
    await worker.start()
    pub = s.publisher(seed=17)
    pub.start(RATE * 1.5)
    await first_group(s)
    recover, codes, rng = [], [], random.Random(6)
    in_group = ("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND "
                "pid <> pg_backend_pid() AND application_name <> 'fw-faults-observer' AND "
                "state = 'active' AND (query ILIKE 'COPY%' OR query LIKE '%WITH runs AS%')")
    for _ in range(5):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        await until(lambda: s.observer.fetch(in_group, timeout_s=10), timeout_s=30,
                    every_s=0.001, what="a group in the database")
        t0 = time.time()
        codes.append(await worker.terminate())
        await worker.start()
        recover.append(await s.observer.recovered(t0))
    result, _ = await finish(s, pub, recover)
    result.notes = f"exit codes of the graceful stops: {codes}"
    assert codes == [0] * 5, f"graceful stops exited {codes}"


async def test_replay_dead_letters(scenario: Scenario) -> None:
    """`feed-worker replay requeue` of everything dead-lettered, with a daemon running.
    Besides bad messages, the dead-letter queue holds copies of good updates that were
    applied long ago and since overwritten, with the headers a worker dead-letters with
    (reason, first receipt, original routing key): each with its own message id (a
    repeat), and again under a new id (as when its id was forgotten after
    FEED_WORKER_MESSAGE_RETENTION_S, so only its order time keeps it from winning).
    Replayed, none may come back over a newer value; each is sent once; the counts are
    printed."""
    s = scenario
    worker = s.worker()
    await worker.start()
    pub = s.publisher(seed=18)
    await pub.publish_many(1000)
    for poison in ("not-json", "unknown-feed") * 3:
        assert await pub.publish(pub.make(KINDS[0], poison))
    await pub.publish_many(1000)
    await wait_settled(s.observer, pub, s.amqp_url)
    await until(lambda: _dead_count(s.amqp_url, 6), timeout_s=30, what="6 dead letters")
    early = [m for m in pub.good() if m.confirmed][:300:5]  # long since overwritten
    await _dead_letter_copies(s.amqp_url, early)
    before = {(r[0], r[1]): r[2] for r in await s.observer.fetch(
        "SELECT inventory_feed_id, external_id, inventory_quantity "
        "FROM inventory_feed_variants")}
    done = await asyncio.to_thread(
        subprocess.run, [str(BIN), "replay", "requeue", "--wait", "60"],
        env={**worker.env}, capture_output=True, text=True, timeout=120, check=False)
    replay_out = done.stdout + done.stderr
    (s.services.artifacts / "replay-output.txt").write_text(replay_out)
    summary = re.search(r"^sent \d+:.*$", done.stdout, re.MULTILINE)
    print(f"\nfeed-worker replay requeue (exit {done.returncode}): "
          f"{summary.group(0) if summary else replay_out.strip()[-2000:]}")
    problems = []
    # Every dead letter sent once: the repeats and the old copies come to nothing, the
    # bad ones are dead-lettered again (so the command exits 1).
    wanted = {"sent": 6 + 2 * len(early), "applied": 0, "stale": len(early), "rejected": 0,
              "repeat": len(early), "dead-lettered again": 6, "pending": 0}
    got = {k: int(v) for k, v in re.findall(
        r"(sent|applied|stale|rejected|repeat|dead-lettered again|pending) (\d+)",
        summary.group(0))} if summary else {}
    if got != wanted:
        problems.append(f"replay reported {got or replay_out.strip()[-500:]!r}; "
                        f"expected {wanted}")
    if done.returncode != 1:
        problems.append(f"replay exited {done.returncode}; 1 expected (bad messages "
                        "dead-lettered again)")
    fresh = [f"replayed-{m.message_id}" for m in early]
    await until(lambda: _all_processed(s.observer, fresh), timeout_s=60,
                what="the replayed copies taken")
    await until(lambda: _dead_count(s.amqp_url, 6), timeout_s=60,
                what="the bad messages dead-lettered again")
    after = {(r[0], r[1]): r[2] for r in await s.observer.fetch(
        "SELECT inventory_feed_id, external_id, inventory_quantity "
        "FROM inventory_feed_variants")}
    changed = [k for k, v in after.items() if before.get(k) != v]
    kind_of = {feed: kind for kind, feed in s.feeds.items()}
    by_kind = {k: sum(1 for c in changed if kind_of.get(c[0]) == k) for k in KINDS}
    result, dead = await finish(s, pub, [], check=False)
    result.total.stale += len(changed)
    for kind, n in by_kind.items():
        result.kinds[kind].stale += n
    result.notes = (f"dead letters replayed: 6 bad, {len(early)} old good copies with their "
                    f"id, {len(early)} under a new id; replay printed "
                    f"{summary.group(0) if summary else '?'!r} (exit {done.returncode}); "
                    f"items changed by the replay: {by_kind}; dead letters after it: "
                    f"{len(dead)}")
    if changed:
        problems.append(f"the replay changed {len(changed)} items {by_kind}: {changed[:5]}")
    if len(dead) != 6:
        problems.append(f"{len(dead)} dead letters after the replay, 6 expected")
    if {d.message_id for d in dead} & ({m.message_id for m in early} | set(fresh)):
        problems.append("a replayed good message was dead-lettered")
    problems = zero_problems(s.name, result.kinds) + problems
    assert not problems, problems


async def _dead_count(amqp_url: str, n: int) -> bool:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(C.QUEUE_DEAD_LETTER, passive=True)
        return (q.declaration_result.message_count or 0) >= n


async def _all_processed(observer: Observer, ids: list[str]) -> bool:
    rows = await observer.fetch(
        "SELECT count(*) FROM processed_messages WHERE message_id = ANY($1::text[])", ids)
    return bool(rows[0][0] == len(ids))


async def _dead_letter_copies(amqp_url: str, messages: list[Sent]) -> None:
    """Each message as a worker dead-letters it (reason, first receipt, original routing
    key), once with its own id and once under a new one, confirmed."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.get_exchange(C.DEAD_LETTER_EXCHANGE, ensure=False)
        for m in messages:
            first = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(m.published_at))
            first += f".{int(m.published_at % 1 * 1e6):06d}+00:00"
            for message_id in (m.message_id, f"replayed-{m.message_id}"):
                headers = {**m.headers,
                           C.HEADER_ERROR: "database unavailable",
                           C.HEADER_ERROR_CLASS: "TransientError",
                           C.HEADER_FIRST_RECEIVED: first,
                           C.HEADER_DEAD_LETTERED_AT: datetime.now(UTC).isoformat(),
                           C.HEADER_ORIGINAL_ROUTING_KEY: C.ROUTING_UPDATE,
                           C.HEADER_ORIGINAL_QUEUE: C.QUEUE_UPDATE}
                await dlx.publish(
                    aio_pika.Message(m.body, message_id=message_id, headers=headers,
                                     content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=C.ROUTING_UPDATE)


PULL_ROWS = 40_000
PULL_BODY = b"external_id,qty\n" + b"".join(b"P%06d,%d\n" % (i, i % 97)
                                            for i in range(PULL_ROWS))


async def _pull_run(observer: Observer, feed_id: int, message_id: str) -> asyncpg.Record | None:
    rows = await observer.fetch("SELECT id, status, error, details, attempts FROM feed_runs "
                                "WHERE inventory_feed_id = $1 AND message_id = $2",
                                feed_id, message_id)
    return rows[0] if rows else None


async def test_postgres_restart_mid_pull(scenario: Scenario) -> None:
    """Postgres restarted (fast, then immediate, then fast) while a pull streams its file:
    the run tries again by itself within seconds, never waits for its lease to expire, and
    ends with the whole file applied."""
    s = scenario
    server = FeedServer()
    await server.start()
    try:
        url = server.add("/stock.csv", PULL_BODY, chunk=16 * 1024, pace_s=0.05)
        feed_id = await s.observer.value(
            "INSERT INTO inventory_feeds (dropship_provider_id, name, resource_type, "
            "resource_location, fetch_cleanup) SELECT dropship_provider_id, 'pulled', "
            "'ftp_csv', $1, 'enabled' FROM inventory_feeds LIMIT 1 RETURNING id", url)
        worker = s.worker(FEED_WORKER_ALLOWED_NETWORKS="127.0.0.1/32",
                          FEED_WORKER_LEASE_S="60")
        await worker.start()
        recover = []
        for i, mode in enumerate(("fast", "immediate", "fast")):
            requests = server.routes["/stock.csv"].requests
            message_id = f"pull-{i}"
            await _publish_pull(s.amqp_url, feed_id, message_id)
            await until(lambda r=requests: _served(server, r), timeout_s=30,
                        what="the pull downloading")
            t0 = time.monotonic()
            await asyncio.to_thread(s.services.pg.stop, mode)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(s.services.pg.start)
            run = await until(lambda m=message_id: _ended(s.observer, feed_id, m),
                              timeout_s=50, every_s=0.2, what=f"pull {i} to end")
            recover.append(time.monotonic() - t0)
            assert run["status"] == "succeeded", run["error"]
            assert run["attempts"] == 1, "the run was taken over: its lease expired"
            assert orjson.loads(run["details"]).get("attempts"), "no retry was recorded"
        [(count, total)] = await s.observer.fetch(
            "SELECT count(*), sum(inventory_quantity) FROM inventory_feed_variants "
            "WHERE inventory_feed_id = $1", feed_id)
        assert (count, total) == (PULL_ROWS, sum(i % 97 for i in range(PULL_ROWS)))
        assert max(recover) < 30, recover  # seconds, well inside the 60 s lease
        NOTES.append(f"postgres restarted mid-pull 3 times: every run retried and succeeded, "
                     f"fault to success {min(recover):.1f}-{max(recover):.1f} s "
                     "(lease 60 s)")
    finally:
        await server.stop()


async def _publish_pull(amqp_url: str, feed_id: int, message_id: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(C.EXCHANGE)
        await exchange.publish(
            aio_pika.Message(orjson.dumps({"feedId": feed_id}), message_id=message_id,
                             content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=C.ROUTING_PULL, mandatory=True)


async def _served(server: FeedServer, before: int) -> bool:
    return server.routes["/stock.csv"].requests > before


async def _ended(observer: Observer, feed_id: int, message_id: str) -> asyncpg.Record | None:
    run = await _pull_run(observer, feed_id, message_id)  # (it waits for Postgres to be back)
    return run if run is not None and run["status"] != "running" else None


def test_secrets_sweep(private_services: Services) -> None:
    """Nothing the suite produced holds the test passwords: daemon logs, run errors and
    rejects, dead letters (headers and bodies), replay output."""
    files = sorted(p for p in private_services.artifacts.iterdir() if p.is_file())
    assert files, "no fault scenario ran: nothing to sweep"
    scanned, hits = 0, []
    for path in files:
        data = path.read_bytes()
        scanned += len(data)
        for secret in cluster.SECRETS:
            if (n := data.count(secret.encode())) > 0:
                hits.append(f"{path.name}: {n}")
    NOTES.append(f"secrets sweep: {len(files)} files, {scanned} bytes, {len(hits)} with a "
                 f"test password{': ' + ', '.join(hits) if hits else ''}")
    assert scanned > 0, "the sweep found nothing to read"
    assert not hits, f"test passwords found in: {hits}"
