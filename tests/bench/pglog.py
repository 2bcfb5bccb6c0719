"""What a daemon sends to Postgres, read back from the server's log.

The benchmark's own database logs every statement (`ALTER DATABASE ... SET
log_min_duration_statement = 0`: that database only, sessions opened from then on), and
the lines of that database written meanwhile are read from the server's log file and
attributed by the log line prefix (`%m [%p] %q%u@%d `: the backend's pid and database).

Counted per kind of statement (the worker's named queries by their name): round trips
(an `execute` of a prepared statement, or a simple query: one Sync each; a `parse` is one
more, asyncpg prepares in a round trip of its own), the server's time in parse + bind +
execute, and transactions: explicit (BEGIN ... COMMIT/ROLLBACK) and implicit (a
statement outside any block is a transaction of its own).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from worker.store import queries

DEFAULT_LOG = Path("/var/log/postgresql/postgresql-15-main.log")
PREFIX = "%m [%p] %q%u@%d "
STORE = Path(queries.__file__).parent
_ENTRY = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] \S*@(\S*) (\w+):  (.*)$")
_DURATION = re.compile(r"duration: ([\d.]+) ms  (statement|parse|bind|execute)[^:]*: (.*)$",
                       re.DOTALL)
_FIXED = (  # kinds that are not the worker's named queries: (text starts with, kind)
    ("BEGIN", "BEGIN"), ("COMMIT", "COMMIT"), ("ROLLBACK TO", "ROLLBACK TO SAVEPOINT"),
    ("ROLLBACK", "ROLLBACK"), ("SAVEPOINT", "SAVEPOINT"), ("RELEASE SAVEPOINT", "RELEASE"),
    ("SELECT pg_advisory_unlock_all()", "pool reset (asyncpg, on each release)"),
    ("COPY ", "COPY ... FROM STDIN"),
    ("WITH RECURSIVE typeinfo_tree", "asyncpg type introspection"),
)


@dataclass
class Kind:
    name: str
    round_trips: int = 0  # executes and simple queries
    parses: int = 0       # statements prepared (a round trip each)
    server_ms: float = 0.0  # parse + bind + execute
    bind_ms: float = 0.0    # of which bind: where a custom plan is made


@dataclass
class Counted:
    kinds: dict[str, Kind] = field(default_factory=dict)  # in order of first appearance
    explicit: int = 0   # BEGIN ... COMMIT or ROLLBACK
    implicit: int = 0   # a statement outside a transaction block
    rollbacks: int = 0
    lines: int = 0

    @property
    def round_trips(self) -> int:
        return sum(k.round_trips + k.parses for k in self.kinds.values())

    @property
    def server_ms(self) -> float:
        return sum(k.server_ms for k in self.kinds.values())


def _normal(text: str) -> str:
    return " ".join(text.split()).rstrip(";").strip()


def _named_queries() -> dict[str, str]:
    """Normalised text of every named query in worker/store/*.sql -> file:name."""
    found: dict[str, str] = {}
    for path in sorted(STORE.glob("*.sql")):
        for name, text in queries.load(path.name).items():
            found.setdefault(_normal(text), f"{path.stem}:{name}")
    return found


def classify(text: str, named: dict[str, str]) -> str:
    normal = _normal(text)
    if normal in named:
        return named[normal]
    for start, kind in _FIXED:
        if normal.startswith(start):
            return kind
    return normal[:60]


def offset(log: Path) -> int:
    return log.stat().st_size


def read_entries(log: Path, start: int, database: str,
                 exclude: Iterable[int] = ()) -> list[tuple[int, str, str, float]]:
    """(pid, step, statement text, ms) of the `duration:` lines of `database` written
    after byte `start`; continuation lines (a tab first) belong to the line before."""
    skip = set(exclude)
    entries: list[tuple[int, str, str, float]] = []
    current: list[str] | None = None
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    pending: tuple[int, str] | None = None

    def close() -> None:
        if pending is None or current is None:
            return
        pid, head = pending
        found = _DURATION.match("\n".join([head, *current]))
        if found is not None:
            entries.append((pid, found[2], found[3], float(found[1])))

    for line in text.splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line)
            continue
        close()
        pending, current = None, None
        m = _ENTRY.match(line)
        if m is None or m[2] != database or m[3] != "LOG" or int(m[1]) in skip:
            continue
        pending, current = (int(m[1]), m[4]), []
    close()
    return entries


def count(entries: list[tuple[int, str, str, float]]) -> Counted:
    named = _named_queries()
    out = Counted(lines=len(entries))
    in_block: dict[int, bool] = {}
    for pid, step, text, ms in entries:
        name = classify(text, named)
        kind = out.kinds.setdefault(name, Kind(name))
        kind.server_ms += ms
        if step == "parse":
            kind.parses += 1
            continue
        if step == "bind":
            kind.bind_ms += ms
            continue
        kind.round_trips += 1
        if name == "BEGIN":
            in_block[pid] = True
        elif name in ("COMMIT", "ROLLBACK"):
            out.explicit += 1
            out.rollbacks += name == "ROLLBACK"
            in_block[pid] = False
        elif not in_block.get(pid, False):
            out.implicit += 1
    return out


def render(counted: Counted, runs: int) -> list[str]:
    """Per run: each kind's round trips, parses and server time, then the totals."""
    per = max(runs, 1)
    out = [f"  {'statement (worker/store/FILE.sql:NAME, or kind)':<52} {'round trips':>11} "
           f"{'parses':>7} {'server ms':>10} {'of it bind':>10}"]
    kinds = [*counted.kinds.values(), Kind(
        "total per run", counted.round_trips - sum(k.parses for k in counted.kinds.values()),
        sum(k.parses for k in counted.kinds.values()), counted.server_ms,
        sum(k.bind_ms for k in counted.kinds.values()))]
    for k in kinds:
        out.append(f"  {k.name:<52} {k.round_trips / per:11.2f} {k.parses / per:7.2f} "
                   f"{k.server_ms / per:10.3f} {k.bind_ms / per:10.3f}")
    out.append(f"  round trips per run: {counted.round_trips / per:.2f} (parses included)")
    out.append(f"  transactions per run: {counted.explicit / per:.2f} explicit (BEGIN ... "
               f"COMMIT/ROLLBACK; {counted.rollbacks / per:.2f} rolled back) + "
               f"{counted.implicit / per:.2f} implicit (a statement alone) = "
               f"{(counted.explicit + counted.implicit) / per:.2f}")
    return out
