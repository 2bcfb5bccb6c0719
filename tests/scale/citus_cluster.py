"""A Citus cluster of its own for the scale tests: a coordinator and two workers, each a
private PostgreSQL 15 instance on loopback (tests/faults/cluster.py's PostgresCluster)
preloading Citus, in a temporary directory; torn down at the end.

The coordinator also holds a plain database (no Citus extension in it): the single
Postgres the cluster is compared with, on the same server settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from tests.faults.cluster import PG_BIN, PostgresCluster
from worker.store import db, migrate

# Coordinator, then the workers (another checkout running its scale tests at the same
# time on this machine sets others).
PORTS = tuple(int(p) for p in
              os.environ.get("FEED_WORKER_SCALE_CITUS_PORTS", "5471,5472,5473").split(","))
CITUS_DB = "fw_citus"
SINGLE_DB = "fw_single"


def missing_citus() -> str | None:
    """One line naming what is missing for a Citus cluster, or None."""
    if not os.access(PG_BIN / "initdb", os.X_OK):
        return f"{PG_BIN / 'initdb'} is missing: apt-get install postgresql-15"
    libdir = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True,
                            check=False).stdout.strip()
    if not (Path(libdir) / "citus.so").exists():
        return f"{libdir}/citus.so is missing: run `make citus` (make scale does)"
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return (f"port {port} is taken (another scale run?); set "
                        "FEED_WORKER_SCALE_CITUS_PORTS=coordinator,worker,worker")
    return None


class CitusNode(PostgresCluster):
    """One node: Citus preloaded; the nodes reach each other over loopback without a
    password (trust on 127.0.0.1 only: the instances are private and short-lived)."""

    def init(self) -> None:
        super().init()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("shared_preload_libraries = 'citus'\n"
                       "max_connections = 200\n"
                       "shared_buffers = 256MB\nwork_mem = 64MB\n"
                       "max_wal_size = 4GB\nsynchronous_commit = off\n"
                       # two cores: no parallel workers fighting the nodes for them
                       "max_parallel_workers_per_gather = 0\n"
                       "citus.max_background_task_executors_per_node = 1\n"
                       # two workers on two cores: few shards per table (the
                       # distributed tables take citus.shard_count when created)
                       "citus.shard_count = 4\n")
        hba = self.data / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        hba.write_text("host all all 127.0.0.1/32 trust\n" + "\n".join(lines) + "\n")


class CitusCluster:
    """Coordinator (PORTS[0]) and workers (PORTS[1:]); `citus_dsn` is the distributed
    database, `single_dsn` the plain one beside it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.nodes = [CitusNode(base / f"node{p}", p) for p in PORTS]

    @property
    def coordinator(self) -> CitusNode:
        return self.nodes[0]

    @property
    def citus_dsn(self) -> str:
        return self.coordinator.dsn(CITUS_DB)

    @property
    def single_dsn(self) -> str:
        return self.coordinator.dsn(SINGLE_DB)

    def start(self) -> None:
        for node in self.nodes:
            node.init()
            node.start()
        asyncio.run(self._setup())

    async def _setup(self) -> None:
        for node in self.nodes:
            conn = await asyncpg.connect(node.dsn("postgres"))
            try:
                await conn.execute(f"CREATE DATABASE {CITUS_DB}")
                if node is self.coordinator:
                    await conn.execute(f"CREATE DATABASE {SINGLE_DB}")
            finally:
                await conn.close()
            conn = await asyncpg.connect(node.dsn(CITUS_DB))
            try:
                await conn.execute("CREATE EXTENSION citus")
            finally:
                await conn.close()
        conn = await asyncpg.connect(self.citus_dsn)
        try:
            await conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)",
                               self.coordinator.port)
            for node in self.nodes[1:]:
                await conn.execute("SELECT citus_add_node('127.0.0.1', $1)", node.port)
            workers = await conn.fetchval("SELECT count(*) FROM citus_get_active_worker_nodes()")
            if workers != len(self.nodes) - 1:
                raise RuntimeError(f"{workers} active Citus workers, expected "
                                   f"{len(self.nodes) - 1}")
        finally:
            await conn.close()

    async def migrate(self) -> None:
        """Both databases migrated: the plain one as always, the distributed one with the
        Citus step after the numbered migrations."""
        for dsn, citus in ((self.single_dsn, False), (self.citus_dsn, True)):
            conn = await db.connect(dsn)
            try:
                await migrate.apply(conn, citus=citus)
            finally:
                await conn.close()

    def destroy(self) -> None:
        for node in reversed(self.nodes):
            node.destroy()


@contextlib.contextmanager
def citus_cluster() -> Iterator[CitusCluster]:
    """A started and migrated cluster in a temporary directory, destroyed (processes and
    data) on the way out."""
    base = Path(tempfile.mkdtemp(prefix="fw-citus-"))
    base.chmod(0o755)  # the nodes run as `postgres`
    cluster = CitusCluster(base)
    # a SIGTERM (a timeout around the run) still stops the nodes and removes their data
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        cluster.start()
        asyncio.run(cluster.migrate())
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")
