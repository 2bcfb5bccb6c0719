"""Three `feed-worker run` replicas on this machine sharing pulls and pushes, one killed
with SIGKILL in the middle of a pull while it holds messages; and the throughput of 1, 2
and 3 replicas. Against the shared Postgres and RabbitMQ, in a database and a vhost of the
test's own.

"Once in effect" is what the lease and claim design promises (worker/claims.py,
worker/lease.py, README "How a pull runs"): a pull-request makes exactly one feed_runs row
(unique by message id; a redelivered request finds it and changes nothing); a run whose
replica died keeps its row and is taken over once its lease expires (`attempts` counts the
tries), the dead attempt's writes rolled back with its transaction; so each request ends
as one succeeded run and the feed's items equal its file. A push is applied once: its
message id is remembered with its merge, and an update older than an item's stored order
time is skipped (only pushes that carry their order time are ordered across replicas: the
README's ordering contract)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from tests.bench import pulls
from tests.scale.replicas import LEASE_S, Busy, PullFeed, Stage, held_by, table
from tests.support.traffic import (
    Publisher,
    Row,
    Worker,
    outcome,
    queue_depth,
    take_dead_letters,
    wait_settled,
    zero_problems,
)
from tests.support.wait import until
from worker import constants as C

LARGE_ROWS, LARGE_FEEDS, LARGE_DOWNLOAD_S = 60_000, 4, 8.0
SMALL_ROWS, SMALL_FEEDS, SMALL_DOWNLOAD_S = 3_000, 36, 0.5
PUSH_RATE = 40.0  # messages per second per publisher while the pulls run (two publishers)
REPEATS = 5  # pull-requests sent again with their message ids after the runs ended

THROUGHPUT_ROWS, THROUGHPUT_FEEDS = 10_000, 40
PUSH_BACKLOG = 1_500  # messages per publisher (four), queued while the replicas are frozen


def _pace(size: int, chunk: int, seconds: float) -> float:
    return seconds * chunk / size


async def _mid_way(s: Stage, large: list[PullFeed]) -> tuple[str, int] | None:
    """A replica in the middle of a large download (a quarter to two thirds of the file
    sent) while pull-requests wait in the queue (so every replica's prefetch is full:
    it holds requests unacked): (its name, the feed)."""
    if await queue_depth(s.amqp_url, C.QUEUE_PULL) == 0:
        return None
    for f in large:
        route = s.server.routes[f.path]
        if route.requests != 1 or not 0.25 <= route.sent / len(route.body) <= 0.67:
            continue
        owner = await s.observer.value(
            "SELECT owner FROM feed_runs WHERE inventory_feed_id = $1 AND status = 'running'",
            f.feed_id)
        if owner in s.replicas:
            return owner, f.feed_id
    return None


@dataclass
class Kill:
    """The replica killed, what it was doing and holding, and when."""

    victim: str
    feed_id: int  # the large feed it was pulling
    held: dict[str, int]  # deliveries unacked per queue, as the broker told just before
    at: float  # time.time()
    runs: list[Any]  # its running runs (id, inventory_feed_id, message_id)


async def _kill_mid_pull(s: Stage, large: list[PullFeed]) -> Kill:
    victim, feed_id = await until(lambda: _mid_way(s, large), timeout_s=60, every_s=0.1,
                                  what="a replica mid-way through a large pull")
    held = await held_by(s.name, victim)
    at = time.time()
    await s.replicas[victim].kill()
    runs = await s.observer.fetch(  # its lease still runs: nobody took them over yet
        "SELECT id, inventory_feed_id, message_id FROM feed_runs "
        "WHERE owner = $1 AND status = 'running'", victim)
    return Kill(victim, feed_id, held, at, runs)


async def _pull_problems(s: Stage, batch: pulls.Batch, feeds: list[PullFeed], kill: Kill,
                         figures: dict[str, str]) -> list[str]:
    """One succeeded run per pull-request and none other, no run left running, every
    feed's items equal to its file; the killed replica's runs taken over after their
    lease expired, by a survivor, with nothing of the dead attempt left (the first import
    copied the whole file into an empty feed again)."""
    runs = await s.observer.fetch(
        "SELECT id, inventory_feed_id, message_id, status, attempts, error, started_at, "
        "details ->> 'copied' AS copied FROM feed_runs WHERE kind = 'pull' ORDER BY id")
    problems = []
    by_message: dict[str | None, list[Any]] = {}
    for r in runs:
        by_message.setdefault(r["message_id"], []).append(r)
    for message_id, (feed_id, _) in batch.sent.items():
        made = by_message.get(message_id, [])
        if len(made) != 1 or made[0]["status"] != "succeeded":
            problems.append(f"pull-request {message_id} (feed {feed_id}) made "
                            f"{[(r['status'], r['error']) for r in made]}")
    if extra := set(by_message) - set(batch.sent):
        problems.append(f"runs of no pull-request sent: {sorted(map(str, extra))}")
    if running := [r["id"] for r in runs if r["status"] == "running"]:
        problems.append(f"runs still running (a lease stuck): {running}")
    mismatched = await s.check_items(feeds)
    problems += mismatched

    rows_of = {f.feed_id: f.file.rows for f in feeds}
    ours = {r["id"] for r in kill.runs}
    if kill.feed_id not in {r["inventory_feed_id"] for r in kill.runs}:
        problems.append(f"the killed replica's large run (feed {kill.feed_id}) was not running")
    taken = {e["run_id"]: name for name in s.replicas if name != kill.victim
             for e in s.events(name, "run.taken_over")}
    delays = []
    for r in runs:
        if r["id"] not in ours:
            continue
        delays.append(delay := r["started_at"].timestamp() - kill.at)
        # Its last renewal came at most a third of a lease before the kill.
        if delay < LEASE_S * 2 / 3 - 0.5:
            problems.append(f"run {r['id']} was taken over {delay:.1f} s after the kill, "
                            "before its lease could expire")
        if r["attempts"] != 2 or r["id"] not in taken:
            problems.append(f"run {r['id']} of the killed replica: attempts {r['attempts']}, "
                            f"taken over by {taken.get(r['id'])}")
        if r["copied"] != str(rows_of[r["inventory_feed_id"]]):
            problems.append(f"run {r['id']} copied {r['copied']} rows into its empty feed, "
                            f"{rows_of[r['inventory_feed_id']]} expected")
    others = [r["id"] for r in runs if r["attempts"] > 1 and r["id"] not in ours]
    takers = sorted({taken[i] for i in ours if i in taken})
    figures.update({
        "pull-requests": str(len(batch.sent)),
        "pull runs succeeded": str(sum(r["status"] == "succeeded" for r in runs)),
        "feeds whose items equal their file": str(len(feeds) - len(mismatched)),
        f"runs of {kill.victim} (killed) taken over (lease {LEASE_S:g} s)":
            f"{len(ours)} by {', '.join(takers) or 'nobody'}",
        "  seconds from the kill to each takeover": ", ".join(f"{d:.1f}" for d in delays),
        "other runs taken over (a lease not renewed in time)": str(len(others)),
        "pull-requests it held unacked at the kill": str(kill.held.get(C.QUEUE_PULL, 0)),
        "push messages it held unacked at the kill": str(kill.held.get(C.QUEUE_UPDATE, 0)),
    })
    return problems


async def _push_problems(s: Stage, publishers: list[Publisher], dead: list[Any],
                         figures: dict[str, str]) -> list[str]:
    """Every confirmed message applied, none twice, no stale overwrite, none dead."""
    problems, push = [], Row()
    for p in publishers:
        rows = await outcome(s.observer, p, dead)
        problems += zero_problems(f"publisher of feeds {list(p.feeds.values())}", rows)
        for row in rows.values():
            push.add(row)
    if push.applied != push.confirmed or push.applied_twice:
        problems.append(f"pushes: {push.confirmed} confirmed, {push.applied} applied, "
                        f"{push.applied_twice} applied twice")
    if dead:
        problems.append(f"{len(dead)} messages dead-lettered: "
                        f"{[d.message_id for d in dead][:5]}")
    figures.update({
        "push messages confirmed": str(push.confirmed),
        "  applied": str(push.applied),
        "  lost": str(push.lost),
        "  applied twice": str(push.applied_twice),
        "  stale overwrites": str(push.stale),
        "messages dead-lettered (pulls and pushes)": str(len(dead)),
    })
    return problems


async def test_kill_one_of_three() -> None:
    async with Stage("replicas") as s:
        large = await s.pull_feeds("large", big := s.file(LARGE_ROWS, seed=1), LARGE_FEEDS,
                                   pace_s=_pace(len(big.body), 64 * 1024, LARGE_DOWNLOAD_S))
        small = await s.pull_feeds("small", little := s.file(SMALL_ROWS, seed=2), SMALL_FEEDS,
                                   chunk=16 * 1024,
                                   pace_s=_pace(len(little.body), 16 * 1024, SMALL_DOWNLOAD_S))
        publishers = await s.push_publishers(2, seed=21)
        await asyncio.gather(*(s.replica(f"replica-{i}").start() for i in (1, 2, 3)))
        for p in publishers:
            p.start(PUSH_RATE)
        batch = await s.request_pulls(large + small)
        kill = await _kill_mid_pull(s, large)

        assert await pulls.wait_finished(await s.pg(), batch, deadline_s=240), \
            "not every pull-request made a run that finished"
        for p in publishers:
            await p.stop()
        for p in publishers:
            await wait_settled(s.observer, p, s.amqp_url)
        # Pull-requests again with their message ids, as a redelivery brings them.
        repeated = list(dict.fromkeys([*(r["message_id"] for r in kill.runs),
                                       *list(batch.sent)[:REPEATS]]))
        await s.repeat_pulls(batch, repeated)

        async def repeats_skipped() -> bool:
            seen = {e.get("message_id") for name in s.replicas if name != kill.victim
                    for e in s.events(name, "pull.skipped")}
            return set(repeated) <= seen

        await until(repeats_skipped, timeout_s=60, what="the repeated pull-requests skipped")
        dead = await take_dead_letters(s.amqp_url)

        figures: dict[str, str] = {}
        problems = await _pull_problems(s, batch, large + small, kill, figures)
        figures[f"pull-requests sent again with their ids ({len(repeated)}): new runs"] = str(
            await s.observer.value("SELECT count(*) FROM feed_runs WHERE kind = 'pull'")
            - len(batch.sent))
        problems += await _push_problems(s, publishers, dead, figures)
        table("replicas: 3 daemons, one killed with SIGKILL in the middle of a pull",
              ("what", "count"), [[k, v] for k, v in figures.items()])
        assert kill.held.get(C.QUEUE_PULL, 0) > 0, \
            f"the killed replica held no pull-request: {kill.held}"
        assert not problems, f"{len(problems)} problems: {problems[:12]}"


async def _push_rate(s: Stage, publishers: list[Publisher], replicas: list[Worker]
                     ) -> tuple[float, float, float]:
    """Messages per second applied by the replicas, frozen while the backlog is published
    (their consumers attached: the broker fills their prefetch), then thawed together;
    the replicas' cores and the machine's busy share meanwhile (Busy)."""
    for r in replicas:
        r.pause()
    try:
        await asyncio.gather(*(p.publish_many(PUSH_BACKLOG) for p in publishers))
    finally:
        for r in replicas:
            r.resume()
    busy = Busy(replicas)
    ids = [m.message_id for p in publishers for m in p.sent]

    async def all_applied() -> bool:
        n = await s.observer.value(
            "SELECT count(*) FROM processed_messages WHERE message_id = ANY($1::text[])", ids)
        return bool(n == len(ids))

    await until(all_applied, timeout_s=180, every_s=0.05, what="the push backlog applied")
    wall = time.monotonic() - busy.started
    return len(ids) / wall, *busy.end()


@dataclass(frozen=True)
class Phase:
    """One round's figures with n replicas."""

    feeds_s: float
    rows_s: float
    pull_s: float
    pull_cpu: str
    push_s: float
    push_cpu: str


async def _phase(s: Stage, feeds: list[PullFeed], n: int, label: str,
                 problems: list[str]) -> Phase:
    """The push backlog, then the pulls, with n replicas started afresh on empty tables;
    what went wrong is added to `problems`."""
    await s.reset()
    replicas = [s.replica(f"{label}-replica-{i}") for i in range(1, n + 1)]
    await asyncio.gather(*(r.start() for r in replicas))
    publishers = await s.push_publishers(4, seed=len(s.publishers))
    push_rate, push_cores, push_busy = await _push_rate(s, publishers, replicas)

    busy = Busy(replicas)
    batch = await s.request_pulls(feeds)
    assert await pulls.wait_finished(await s.pg(), batch, deadline_s=240), \
        f"{label}: not every pull finished"
    pull_cores, pull_busy = busy.end()
    done = await pulls.outcome(await s.pg(), batch)
    wall = done.wall_s or float("nan")
    if done.statuses != {"succeeded": len(feeds)}:
        problems.append(f"{label}: runs {done.statuses}: {done.first_error}")
    problems += [f"{label}: {p}" for p in await s.check_items(feeds)]
    for p in publishers:
        problems += zero_problems(label, await outcome(s.observer, p, []))
    codes = await asyncio.gather(*(r.terminate() for r in replicas))
    if any(codes):
        problems.append(f"{label}: graceful stops exited {codes}")
    return Phase(len(feeds) / wall, done.totals["rows_read"] / wall, wall,
                 f"{pull_cores:.2f} / {pull_busy:.0%}", push_rate,
                 f"{push_cores:.2f} / {push_busy:.0%}")


async def test_throughput_by_replicas() -> None:
    """The same pulls and the same push backlog with 1, 2 and 3 replicas, in two rounds
    (1, 2, 3 then 3, 2, 1: other work on the machine weighs on both orders alike); the
    better round of each is shown."""
    async with Stage("throughput") as s:
        feeds = await s.pull_feeds("feed", s.file(THROUGHPUT_ROWS, seed=3), THROUGHPUT_FEEDS)
        problems: list[str] = []
        phases: dict[int, list[Phase]] = {1: [], 2: [], 3: []}
        for round_, order in enumerate(((1, 2, 3), (3, 2, 1)), start=1):
            for n in order:
                phases[n].append(await _phase(s, feeds, n, f"r{round_}-n{n}", problems))
        rows = []
        for n, got in phases.items():
            pull = max(got, key=lambda p: p.feeds_s)
            push = max(got, key=lambda p: p.push_s)
            rows.append([str(n), f"{pull.feeds_s:.1f}", f"{pull.rows_s:,.0f}",
                         f"{pull.pull_s:.1f}", pull.pull_cpu, f"{push.push_s:,.0f}",
                         push.push_cpu, " / ".join(f"{p.push_s:,.0f}" for p in got)])
        cores = len(os.sched_getaffinity(0))
        table(f"replicas: throughput on {cores} cores (contention, not scaling)",
              ("replicas", "feeds/s", "rows/s", "pull s", "pull cpu", "push msgs/s",
               "push cpu", "push msgs/s by round"),
              rows,
              (f"pulls: {THROUGHPUT_FEEDS} first imports of {THROUGHPUT_ROWS:,}-row CSV "
               "feeds, every request published at once; pushes: a backlog of 4 x "
               f"{PUSH_BACKLOG:,} messages to 8 feeds (every third one variant, the others "
               "10-50), published while the replicas were frozen (SIGSTOP), timed from "
               "their SIGCONT to the last one applied; the better of two rounds",
               "cpu: cores the replicas kept busy / share of the machine's cores busy (every "
               "process: Postgres, RabbitMQ, this test, anything else running)"))
        assert not problems, problems
