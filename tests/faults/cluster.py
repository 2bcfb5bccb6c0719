"""Private PostgreSQL and RabbitMQ instances for the fault tests: their own ports, data
directories and passwords, so that they can be killed and restarted freely while the
machine's shared services (5432, 5672) are never touched."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.services import alive

PG_BIN = Path(os.environ.get("FEED_WORKER_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
RABBIT_BIN = Path(os.environ.get("FEED_WORKER_FAULTS_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))

# Ports of the private instances (another checkout running its fault tests at the same
# time on this machine sets others).
PG_PORT = int(os.environ.get("FEED_WORKER_FAULTS_PG_PORT", "5491"))
PG_PASSWORD = "fw-faults-pg-Secret-7f3a9c"
AMQP_PORT = int(os.environ.get("FEED_WORKER_FAULTS_AMQP_PORT", "5791"))
AMQP_DIST_PORT = AMQP_PORT + 20000
AMQP_USER = "fwfaults"
AMQP_PASSWORD = "fw-faults-amqp-Secret-2b8e41"
RABBIT_NODE = f"fwfaults{AMQP_PORT}@localhost"

SECRETS = (PG_PASSWORD, AMQP_PASSWORD)


def ports_taken() -> str | None:
    """One line naming a port of the private instances that something already listens
    on, or None."""
    for port in (PG_PORT, AMQP_PORT, AMQP_DIST_PORT):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return (f"port {port} is taken (another fault run?); set "
                        "FEED_WORKER_FAULTS_PG_PORT / FEED_WORKER_FAULTS_AMQP_PORT")
    return None


def missing_tools() -> str | None:
    """One line naming what is missing, or None."""
    for tool in (PG_BIN / "initdb", PG_BIN / "pg_ctl", RABBIT_BIN / "rabbitmq-server",
                 RABBIT_BIN / "rabbitmqctl"):
        if not os.access(tool, os.X_OK):
            return (f"{tool} is missing: the fault tests need PostgreSQL 15 and RabbitMQ "
                    "installed (apt-get install postgresql-15 rabbitmq-server)")
    return None


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: "
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


class PostgresCluster:
    """A PostgreSQL 15 cluster of its own (initdb as `postgres`), TCP with password auth."""

    def __init__(self, base: Path, port: int = PG_PORT) -> None:
        self.base = base
        self.port = port
        self.data = base / "pgdata"
        self.sockets = base / "pgsock"
        self.log = base / "pglog" / "postgres.log"

    def dsn(self, database: str, port: int | None = None) -> str:
        return (f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port or self.port}/"
                f"{database}")

    def _as_postgres(self, args: list[str], check: bool = True,
                     timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """PostgreSQL refuses to run as root: as root, run as `postgres`; otherwise as
        whoever runs the tests."""
        if os.geteuid() != 0:
            return _run(args, check=check, timeout=timeout)
        return _run(["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(args)],
                    check=check, timeout=timeout)

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        pwfile = self.base / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        pwfile.chmod(0o600)
        for path in (self.data, self.sockets, self.log.parent, pwfile):
            if path != pwfile:
                path.mkdir()
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                           "--auth-local=trust", "--auth-host=scram-sha-256",
                           f"--pwfile={pwfile}", "--no-sync"])
        pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sockets}'\n"
                "max_connections = 100\nshared_buffers = 64MB\n"
                # Crashes here are of the server only (kill, immediate stop), never of
                # the machine: the page cache keeps what fsync would have.
                "fsync = off\nfull_page_writes = off\n"
                "log_min_messages = warning\n")

    def start(self) -> None:
        self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                           "-w", "-t", "60", "start"])

    def stop(self, mode: str = "fast", check: bool = True) -> None:
        self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                           "-t", "60", "stop"], check=check)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stop whatever runs (also after a failure), then kill what is left."""
        if self.running():
            self.stop("immediate", check=False)
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


class RabbitNode:
    """A RabbitMQ node of its own: node name, ports, data directory, env file, HOME with
    the Erlang cookie."""

    def __init__(self, base: Path, port: int = AMQP_PORT, dist_port: int = AMQP_DIST_PORT,
                 node: str = RABBIT_NODE, cookie: str | None = None) -> None:
        self.base = base
        self.port = port
        self.dist_port = dist_port
        self.node = node
        # The Erlang cookie: the nodes of one cluster share it (a random one otherwise).
        self.cookie = cookie or "FWFAULTSCOOKIE" + os.urandom(8).hex().upper()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            "HOME": str(base / "home"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "env.conf"),
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def url(self, vhost: str, port: int | None = None, query: str = "") -> str:
        return (f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@127.0.0.1:{port or self.port}/{vhost}"
                + (f"?{query}" if query else ""))

    def init(self) -> None:
        home = self.base / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (self.base / "env.conf").write_text(f"NODENAME={self.node}\n")
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
            "log.console = false\nlog.file.level = warning\n")

    def ctl(self, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                    check=check, timeout=timeout)

    def start(self) -> None:
        _run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=self.env)
        # await_startup gives up at once while the node is not yet known to epmd.
        deadline = time.monotonic() + 90
        while True:
            done = self.ctl("await_startup", "--timeout", "60", check=False, timeout=90)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.node} did not start: "
                                   f"{done.stdout[-1000:]}{done.stderr[-1000:]}")
            time.sleep(0.5)

    def setup_user(self) -> None:
        self.ctl("add_user", AMQP_USER, AMQP_PASSWORD)
        self.ctl("set_user_tags", AMQP_USER, "administrator")

    def add_vhost(self, vhost: str) -> None:
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, AMQP_USER, ".*", ".*", ".*")

    def stop(self) -> None:
        self.ctl("stop", timeout=120)

    def join(self, seed: RabbitNode) -> None:
        """Join the cluster of `seed` (this node's own data is reset)."""
        self.ctl("stop_app")
        self.ctl("reset")
        self.ctl("join_cluster", seed.node)
        self.ctl("start_app")

    def pid(self) -> int | None:
        try:
            return int((self.base / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def destroy(self) -> None:
        """Stop the node (also after a failure); kill its VM if it does not go."""
        pid = self.pid()
        if pid is None:
            return
        self.ctl("stop", check=False, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.2)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
