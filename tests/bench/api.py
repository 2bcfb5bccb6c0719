"""HTTP API benchmark: `feed-worker api` under wrk, next to a minimal aiohttp handler (the
HTTP limit of this machine), with the same wrk settings in the same run.

Run from the repository root: `.venv/bin/python -m tests.bench.api [--rounds 3]`.
Not a pass/fail test: it prints rates, latencies, ratios and the targets. It exits 1 when
a run got answers other than 200/202 or the daemon did not apply everything, 2 when the
benchmark could not be set up.

A fresh database and a RabbitMQ vhost of its own; a provider and two webhook feeds made
through the API (admin token from `feed-worker token create --admin`), then a provider
token. Each round:

  M1  the minimal handler, one variant per request (the HTTP limit for S)
  S   synchronous PUT parse-webhook, one variant per request, externalIds at random from a
      key space (inserts first, then more and more updates)
  M50 the minimal handler, arrays of 50 variants (the HTTP limit for A)
  A   asynchronous PUT parse-webhook, arrays of 50: published and confirmed (202), while
      `feed-worker run` applies them; D is the daemon's rate, from A's start until it has
      applied every accepted variant
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from tests.bench import db, wrk
from tests.bench.amqp import DEFAULT_AMQP_URL
from tests.bench.children import run_child_async
from tests.bench.pull_csv import feed_worker_binary, say
from tests.bench.services import (
    Child,
    StartError,
    child_env,
    create_vhost,
    delete_vhost,
    with_vhost,
)

DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/postgres"
SYNC_KEYS = 50_000
ASYNC_KEYS = 200_000
DRAIN_DEADLINE_S = 120.0

PUSH_TOTALS = """
SELECT coalesce(sum(rows_read), 0)::bigint AS received, coalesce(sum(inserted), 0)::bigint
       AS inserted, coalesce(sum(updated), 0)::bigint AS updated,
       coalesce(sum(unchanged), 0)::bigint AS unchanged,
       coalesce(sum(rejected), 0)::bigint AS rejected,
       coalesce(sum((details ->> 'stale')::int), 0)::bigint AS stale
FROM feed_runs WHERE kind = 'push' AND inventory_feed_id = $1
"""
PUBLISHED = "SELECT count(*) FROM api_messages WHERE published_at IS NOT NULL " \
            "AND inventory_feed_id = $1"


@dataclass(frozen=True)
class Options:
    rounds: int
    seconds: float
    connections: int
    threads: int
    db_name: str
    vhost: str
    workdir: Path
    api_env: dict[str, str]


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="rounds of M1, S, M50, A (medians are printed)")
    add("--seconds", type=float, default=8.0, help="seconds of each wrk run")
    add("--connections", type=int, default=32, help="wrk's concurrent connections")
    add("--threads", type=int, default=2, help="wrk's threads")
    add("--quick", action="store_true", help="one round of 4 s")
    add("--db-name", default="feed_worker_api_bench", help="dropped and created at the start")
    add("--vhost", default="feed_worker_api_bench", help="RabbitMQ vhost, made and deleted")
    add("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "feed-worker-bench")
    add("--set", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment of the API process, e.g. FEED_WORKER_API_PROCESSES=2")
    args = parser.parse_args(argv)
    api_env = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes NAME=VALUE, not {item!r}")
        api_env[name] = value
    return Options(1 if args.quick else args.rounds, 4.0 if args.quick else args.seconds,
                   args.connections, args.threads, args.db_name, args.vhost, args.workdir,
                   api_env)


@dataclass
class Round:
    m1: wrk.WrkResult
    s: wrk.WrkResult
    m50: wrk.WrkResult
    a: wrk.WrkResult
    accepted: int         # variants published and confirmed in A
    drained_s: float | None  # from A's start until the daemon applied them all
    sync_mix: dict[str, int] = field(default_factory=dict)


@dataclass
class Bench:
    opts: Options
    pg: asyncpg.Connection
    api_url: str
    minimal_url: str
    token: str
    sync_feed: int
    async_feed: int
    rounds: list[Round] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def load(self) -> wrk.Load:
        return wrk.Load(self.opts.connections, self.opts.threads, self.opts.seconds)

    def path(self, base: str, feed_id: int) -> str:
        return f"{base}/api/inventory-feeds/{feed_id}/parse-webhook.json"

    async def totals(self, feed_id: int) -> dict[str, int]:
        row = await self.pg.fetchrow(PUSH_TOTALS, feed_id)
        assert row is not None
        return dict(row)

    async def one_round(self, n: int) -> Round:
        log = self.opts.workdir / "logs" / "api-wrk.log"
        load, token = self.load, self.token
        say(f"round {n}: M1 ...")
        m1 = await wrk.run(self.path(self.minimal_url, 1), load, token, 1, SYNC_KEYS, n, log)
        say(f"round {n}: S ...")
        before = await self.totals(self.sync_feed)
        s = await wrk.run(self.path(self.api_url, self.sync_feed), load, token, 1, SYNC_KEYS,
                          n, log)
        after = await self.totals(self.sync_feed)
        mix = {k: after[k] - before[k] for k in after}
        say(f"round {n}: M50 ...")
        m50 = await wrk.run(self.path(self.minimal_url, 1), load, token, 50, ASYNC_KEYS, n, log)
        say(f"round {n}: A ...")
        published = await self.pg.fetchval(PUBLISHED, self.async_feed)
        started = time.perf_counter()
        a = await wrk.run(self.path(self.api_url, self.async_feed), load, token, 50,
                          ASYNC_KEYS, n, log)
        accepted = (await self.pg.fetchval(PUBLISHED, self.async_feed) - published) * 50
        drained = await self.drain(started)
        r = Round(m1, s, m50, a, accepted, drained, mix)
        for label, got in (("S", s), ("A", a), ("M1", m1), ("M50", m50)):
            if got.others or got.errors:
                self.problems.append(f"round {n} {label}: answers {got.others}, "
                                     f"errors {got.errors}")
        if drained is None:
            self.problems.append(f"round {n}: the daemon did not apply every variant in "
                                 f"{DRAIN_DEADLINE_S:g} s")
        return r

    async def drain(self, started: float) -> float | None:
        """Seconds from `started` until every variant published so far has been applied
        (counted in the feed's push runs); None at the deadline."""
        wanted = await self.pg.fetchval(PUBLISHED, self.async_feed) * 50
        end = time.perf_counter() + DRAIN_DEADLINE_S
        while time.perf_counter() < end:
            if (await self.totals(self.async_feed))["received"] >= wanted:
                return time.perf_counter() - started
            await asyncio.sleep(0.05)
        return None


def _med(values: list[float]) -> str:
    """Median and, with several rounds, the range."""
    if not values:
        return "n/a"
    m = statistics.median(values)
    digits = 0 if m >= 100 else 1 if m >= 10 else 2
    text = f"{m:,.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    return text


def render(bench: Bench, header: list[str]) -> str:
    rs = bench.rounds
    out = ["", *header, "", "medians of the rounds (range in parentheses)", ""]
    rows: list[tuple[str, str, Callable[[Round], wrk.WrkResult], int]] = [
        ("M1", "minimal aiohttp handler, 1 variant/request", lambda r: r.m1, 1),
        ("S", "PUT parse-webhook, 1 variant (synchronous)", lambda r: r.s, 1),
        ("M50", "minimal aiohttp handler, 50 variants/request", lambda r: r.m50, 50),
        ("A", "PUT parse-webhook, 50 variants (asynchronous)", lambda r: r.a, 50),
    ]
    out.append(f"{'run':<4} {'what':<46} {'requests/s':>22} {'p50 ms':>16} {'p99 ms':>18} "
               f"{'variants/s':>24}")
    for label, what, get, per in rows:
        out.append(
            f"{label:<4} {what:<46} {_med([get(r).rate for r in rs]):>22} "
            f"{_med([get(r).p50_ms for r in rs]):>16} {_med([get(r).p99_ms for r in rs]):>18} "
            f"{_med([get(r).rate * per for r in rs]):>24}")
    accepted = [r.accepted / r.a.seconds for r in rs]
    applied = [r.accepted / r.drained_s for r in rs if r.drained_s]
    out.append(f"{'A':<4} {'accepted (published and confirmed, 202)':<46} {'':>22} {'':>16} "
               f"{'':>18} {_med(accepted):>24}")
    out.append(f"{'D':<4} {'applied by the daemon (A start -> last apply)':<46} {'':>22} "
               f"{'':>16} {'':>18} {_med(applied):>24}")
    out += ["", f"{'ratio / target':<52} {'value':>24}  {'target':<12} result"]

    def line(name: str, values: list[float], target: str, ok: Callable[[float], bool] | None
             ) -> str:
        verdict = "reference" if ok is None else (
            "n/a" if not values else "met" if ok(statistics.median(values)) else "MISSED")
        return f"{name:<52} {_med(values):>24}  {target:<12} {verdict}"

    out.append(line("S requests/s", [r.s.rate for r in rs], ">= 1500", lambda v: v >= 1500))
    out.append(line("S p99 latency (ms)", [r.s.p99_ms for r in rs], "<= 50", lambda v: v <= 50))
    out.append(line("A variants/s accepted", accepted, ">= 50000", lambda v: v >= 50_000))
    keeps = [d / a for d, a in zip(applied, accepted, strict=False)]
    out.append(line("D/A daemon's rate vs accepted (keeps up)", keeps, ">= 0.9",
                    lambda v: v >= 0.9))
    out.append(line("S/M1 requests/s, ours / the HTTP limit", [r.s.rate / r.m1.rate for r in rs],
                    "", None))
    out.append(line("A/M50 requests/s, ours / the HTTP limit",
                    [r.a.rate / r.m50.rate for r in rs], "", None))
    out.append(line("S p99 / M1 p99", [r.s.p99_ms / r.m1.p99_ms for r in rs], "", None))
    out += ["", "S outcomes per round (from the feed's push runs): " + "; ".join(
        ", ".join(f"{k} {v}" for k, v in r.sync_mix.items() if k != "received") for r in rs)]
    if bench.problems:
        out += ["", "problems:", *bench.problems]
    return "\n".join(out)


async def _token(feed_worker: str, env: dict[str, str], *args: str, log: Path) -> str:
    result = await run_child_async([feed_worker, "token", "create", *args], log=log, env=env)
    if not result.ok:
        raise StartError(f"token create failed: {result.tail()}")
    return next(x for x in result.output().split() if x.startswith("fwt_"))


async def _call(session: aiohttp.ClientSession, url: str, token: str, body: object) -> int:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        data = await r.json()
        if r.status != 201:
            raise StartError(f"POST {url}: {r.status} {data}")
        return int(data["id"])


async def main(opts: Options) -> int:
    started = time.perf_counter()
    feed_worker = feed_worker_binary()
    if feed_worker is None:
        say("cannot set up the benchmark: no feed-worker in .venv/bin (pip install -e .)")
        return 2
    url = db.with_database(os.environ.get("DATABASE_URL", DEFAULT_PG_URL), opts.db_name)
    base_amqp = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    amqp_url = with_vhost(base_amqp, opts.vhost)
    logs = opts.workdir / "logs"
    children: list[Child] = []
    vhost_made = False
    try:
        wrk.binary()
        await db.recreate_database(url, opts.db_name)
        vhost_made = await create_vhost(opts.vhost, base_amqp.split("//")[1].split(":")[0])
        env = child_env(url, amqp_url)
        migrated = await run_child_async([feed_worker, "migrate"], log=logs / "api-migrate.log",
                                         env=env)
        if not migrated.ok:
            raise StartError(f"migrate failed: {migrated.tail()}")
        daemon = await Child.start("daemon", [feed_worker, "run"],
                                   child_env(url, amqp_url, FEED_WORKER_LOG_LEVEL="info"),
                                   logs / "api-daemon.log")
        children.append(daemon)
        await daemon.event("daemon.send_work")  # the queues are declared
        api = await Child.start("api", [feed_worker, "api"], child_env(
            url, amqp_url, FEED_WORKER_LOG_LEVEL="info", FEED_WORKER_API_PORT="0",
            FEED_WORKER_API_HOST="127.0.0.1", FEED_WORKER_API_RATE_PER_S="1000000",
            FEED_WORKER_API_RATE_BURST="1000000", **opts.api_env), logs / "api-api.log")
        children.append(api)
        api_url = f"http://127.0.0.1:{(await api.event('api.started'))['port']}"
        minimal = await Child.start("minimal", [sys.executable, "-m",
                                                "tests.bench.minimal_http"],
                                    env, logs / "api-minimal.log")
        children.append(minimal)
        admin = await _token(feed_worker, env, "--admin", log=logs / "api-token.log")
        async with aiohttp.ClientSession() as session:
            provider = await _call(session, api_url + "/api/dropship-providers.json", admin,
                                   {"name": "API benchmark"})
            feeds = [await _call(session, api_url + "/api/inventory-feeds.json", admin,
                                 {"dropshipProviderId": provider, "name": name,
                                  "resourceType": "webhook"}) for name in ("sync", "async")]
        token = await _token(feed_worker, env, "--provider", str(provider),
                             log=logs / "api-token.log")
        minimal_url = f"http://127.0.0.1:{(await minimal.event('minimal.started'))['port']}"
        pg = await asyncpg.connect(url)
        try:
            bench = Bench(opts, pg, api_url, minimal_url, token, feeds[0], feeds[1])
            version = await pg.fetchval("SHOW server_version")
            header = [
                f"feed-worker HTTP API benchmark: wrk -t{opts.threads} -c{opts.connections} "
                f"-d{opts.seconds:g}s per run, {opts.rounds} round(s); sync key space "
                f"{SYNC_KEYS:,}, async key space {ASYNC_KEYS:,}",
                f"PostgreSQL {version}, database {opts.db_name}; RabbitMQ vhost {opts.vhost}; "
                f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
                + (f"; API environment {opts.api_env}" if opts.api_env else ""),
            ]
            say("\n".join(header))
            for n in range(1, opts.rounds + 1):
                bench.rounds.append(await bench.one_round(n))
        finally:
            await pg.close()
    except (StartError, wrk.WrkError, OSError, asyncpg.PostgresError) as exc:
        say(f"cannot set up the benchmark: {type(exc).__name__}: {exc}")
        return 2
    finally:
        for child in reversed(children):
            code = await child.stop()
            if code != 0:
                say(f"{child.name} exited {code} (log {child.log})")
        if vhost_made:
            await delete_vhost(opts.vhost)
    say(render(bench, header))
    say(f"\nbenchmark took {time.perf_counter() - started:.0f} s; logs in {logs}")
    return 1 if bench.problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
