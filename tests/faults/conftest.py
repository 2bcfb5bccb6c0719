"""Fixtures of the fault tests: a private PostgreSQL cluster and RabbitMQ node for the
session (stopped at the end, also on failure), and per scenario its own database and
vhost, a daemon process, a publisher and an observer; the results table."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.faults import cluster
from tests.support.traffic import BIN, Observer, Publisher, Row, Worker, webhook_feeds

TABLE_FILE = Path(__file__).parent / "last-run.txt"
HEADER = ("scenario", "published", "confirmed", "applied", "lost", "applied twice",
          "stale overwrites", "good dead-lettered", "recover s (max)")


@dataclass
class Result:
    name: str
    total: Row
    kinds: dict[str, Row]
    recover_s: float | None
    notes: str = ""


RESULTS: list[Result] = []
NOTES: list[str] = []  # lines for under the table (the secrets sweep)


@dataclass
class Services:
    base: Path
    artifacts: Path
    pg: cluster.PostgresCluster
    rabbit: cluster.RabbitNode


@pytest.fixture(scope="session")
def private_services() -> Iterator[Services]:
    problem = cluster.missing_tools() or cluster.ports_taken()
    if problem:
        pytest.fail(problem, pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="feed-worker-faults-"))
    base.chmod(0o755)  # the postgres user reaches its data directory through it
    artifacts = base / "artifacts"
    artifacts.mkdir()
    pg = cluster.PostgresCluster(base / "pg")
    rabbit = cluster.RabbitNode(base / "rabbit")
    try:
        pg.init()
        pg.start()
        rabbit.init()
        rabbit.start()
        rabbit.setup_user()
        yield Services(base, artifacts, pg, rabbit)
    finally:
        try:
            rabbit.destroy()
        finally:
            pg.destroy()
            if not os.environ.get("FEED_WORKER_FAULTS_KEEP"):
                shutil.rmtree(base, ignore_errors=True)


@dataclass
class Scenario:
    name: str
    services: Services
    dsn: str
    amqp_url: str
    feeds: dict[str, int]
    observer: Observer
    log_path: Path
    records_path: Path
    workers: list[Worker] = field(default_factory=list)
    publishers: list[Publisher] = field(default_factory=list)

    def worker(self, database_url: str | None = None, amqp_url: str | None = None,
               **env: str) -> Worker:
        w = Worker(self.log_path, database_url or self.dsn, amqp_url or self.amqp_url, **env)
        self.workers.append(w)
        return w

    def publisher(self, seed: int = 1) -> Publisher:
        p = Publisher(self.amqp_url, self.feeds, seed)
        self.publishers.append(p)
        return p

    def record(self, rows: dict[str, Row], recover_s: float | None, notes: str = "") -> Result:
        total = Row()
        for r in rows.values():
            total.add(r)
        result = Result(self.name, total, rows, recover_s, notes)
        RESULTS.append(result)
        print("\n" + format_table([result]))
        return result


async def _setup(services: Services, name: str) -> Scenario:
    await asyncio.to_thread(services.rabbit.add_vhost, name)
    dsn = services.pg.dsn(f"fw_{name}")
    env = {**os.environ, "DATABASE_URL": dsn}
    done = await asyncio.to_thread(subprocess.run, [str(BIN), "migrate"], env=env,
                                   capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"feed-worker migrate failed: {done.stderr[-2000:]}"
    conn = await asyncpg.connect(dsn)
    try:
        provider = await conn.fetchval(
            "INSERT INTO dropship_providers (name) VALUES ('faults') RETURNING id")
        feeds = await webhook_feeds(conn, provider, "feed")
    finally:
        await conn.close()
    return Scenario(name, services, dsn, services.rabbit.url(name), feeds, Observer(dsn),
                    services.artifacts / f"{name}-daemon.log",
                    services.artifacts / f"{name}-records.jsonl")


@pytest.fixture
async def scenario(private_services: Services, request: pytest.FixtureRequest
                   ) -> AsyncIterator[Scenario]:
    name = request.node.name.removeprefix("test_").replace("[", "_").rstrip("]")[:40]
    s = await _setup(private_services, name)
    try:
        yield s
    finally:
        for p in s.publishers:
            await p.discard()
        for w in s.workers:
            await w.close()
        await s.observer.close()


def _cells(r: Result) -> list[str]:
    t = r.total
    return [r.name, str(t.published), str(t.confirmed), str(t.applied), str(t.lost),
            str(t.applied_twice), str(t.stale), str(t.good_dead),
            "-" if r.recover_s is None else f"{r.recover_s:.1f}"]


def format_table(results: list[Result]) -> str:
    rows = [list(HEADER)] + [_cells(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_kinds(results: list[Result]) -> str:
    lines = []
    for r in results:
        for kind, k in r.kinds.items():
            lines.append(f"  {r.name} [{kind}]: published {k.published}, confirmed "
                         f"{k.confirmed}, applied {k.applied}, lost {k.lost}, applied twice "
                         f"{k.applied_twice}, stale {k.stale}, good dead-lettered "
                         f"{k.good_dead}; item history rows {k.history}")
        if r.notes:
            lines.append(f"  {r.name}: {r.notes}")
    return "\n".join(lines)


_STARTED = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    text = (f"fault tests, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
            f"{time.monotonic() - _STARTED:.0f} s\n{format_table(RESULTS)}\n\nper feed kind:\n"
            f"{format_kinds(RESULTS)}\n" + "".join(f"{n}\n" for n in NOTES))
    terminalreporter.write_sep("=", "fault scenarios")
    terminalreporter.write(text)
    TABLE_FILE.write_text(text)
