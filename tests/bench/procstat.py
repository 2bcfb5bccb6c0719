"""CPU time of the processes in a timed run (Linux /proc): who was busy on this small box."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
SERVERS = {"postgres": "postgres", "beam.smp": "rabbitmq"}  # comm -> who


def _cpu_and_comm(pid: int) -> tuple[str, float] | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    return comm, (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


@dataclass(frozen=True)
class Snapshot:
    cpu: dict[int, tuple[str, float]]  # pid -> (who, CPU seconds)


def _walk(name: Callable[[int, str], str | None]) -> Snapshot:
    """CPU seconds of every process that `name(pid, comm)` names (None: left out)."""
    cpu: dict[int, tuple[str, float]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        got = _cpu_and_comm(pid)
        if got is None:
            continue
        comm, seconds = got
        who = name(pid, comm)
        if who is not None:
            cpu[pid] = (who, seconds)
    return Snapshot(cpu)


def snapshot(ours: dict[int, str] | None = None) -> Snapshot:
    """CPU seconds of every Postgres and RabbitMQ process, and of `ours` (pid -> name)."""
    ours = ours or {}
    return _walk(lambda pid, comm: ours.get(pid) or SERVERS.get(comm))


def used(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds spent between the snapshots, by who (processes alive at `after`)."""
    total: dict[str, float] = {}
    for pid, (who, seconds) in after.cpu.items():
        _, earlier = before.cpu.get(pid, (who, 0.0))
        total[who] = total.get(who, 0.0) + max(0.0, seconds - earlier)
    return total


def describe(cpu: dict[str, float], wall_s: float) -> str:
    """'worker 1.9 s (95%), postgres 0.8 s (40%), ...' as a share of one core."""
    parts = [
        f"{who} {seconds:.1f} s ({100 * seconds / wall_s:.0f}%)"
        for who, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])
    ]
    return ", ".join(parts)


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process (its own address space, not inherited), in MiB."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _postgres_database(pid: int) -> str | None:
    """The database a Postgres backend serves, read from its process title
    (`postgres: 15/main: user db 127.0.0.1(5432) idle`); None for the server's own processes
    (checkpointer, walwriter, autovacuum, ...)."""
    try:
        title = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    words = title.strip().split(": ")[-1].split()
    if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
        return words[1]
    return None


def snapshot_others(own_database: str, own_pids: frozenset[int]) -> Snapshot:
    """CPU seconds of every process but `own_pids` and the Postgres processes that serve
    `own_database` or the whole server: what else kept this box busy. Named by command,
    Postgres backends by their database. Taken before and after a run, `used()` tells
    (a lower bound: a process that starts and ends within the run is not seen)."""

    def name(pid: int, comm: str) -> str | None:
        if pid in own_pids:
            return None
        if comm == "postgres":
            database = _postgres_database(pid)
            if database is None or database == own_database:
                return None
            return f"postgres ({database})"
        return comm

    return _walk(name)


def snapshot_database(database: str, ours: dict[int, str]) -> Snapshot:
    """CPU seconds of `ours` (pid -> name), of the Postgres backends that serve `database`
    (as `postgres (database)`) and of RabbitMQ (shared with whoever else uses it)."""

    def name(pid: int, comm: str) -> str | None:
        who = ours.get(pid)
        if who is None and comm == "postgres" and _postgres_database(pid) == database:
            who = f"postgres ({database})"
        elif who is None and comm == "beam.smp":
            who = "rabbitmq"
        return who

    return _walk(name)

