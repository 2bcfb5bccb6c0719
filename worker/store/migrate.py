"""Numbered SQL migrations from schemas/sql/, each applied once, under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from worker import logs
from worker.constants import LOCK_CLASS_MIGRATE
from worker.errors import ConfigError
from worker.store.queries import q

log = logs.get(__name__)
_FILE = re.compile(r"^(\d{4})_[\w-]+\.sql$")
_SQL = "migrate.sql"


def schema_dir() -> Path:
    """schemas/sql of a source checkout, or the copy packed into an installed wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "schemas" / "sql", package / "_schemas" / "sql"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("schemas/sql not found beside the worker package")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def discover(directory: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((directory or schema_dir()).iterdir()):
        m = _FILE.match(path.name)
        if m:
            found.append(Migration(m.group(1), path.name, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two migrations share a number in {directory or schema_dir()}")
    return found


def statements(sql: str) -> list[str]:
    """The statements of a script: split after each `;` that ends a line outside a `$$`
    body (enough for the Citus steps' files)."""
    found, current = [], []
    for line in sql.splitlines(keepends=True):
        current.append(line)
        text = "".join(current)
        if line.rstrip().endswith(";") and text.count("$$") % 2 == 0:
            if any(not ln.strip().startswith("--") and ln.strip() for ln in current):
                found.append(text.strip())
            current = []
    if "".join(current).strip():
        found.append("".join(current).strip())
    return found


_CITUS = "citus-"


def citus_steps(directory: Path | None = None) -> list[Migration]:
    """The Citus mode's steps (schemas/sql/citus/), recorded as versions `citus-NNNN`."""
    return [Migration(f"{_CITUS}{m.version}", f"citus/{m.name}", m.sql)
            for m in discover((directory or schema_dir()) / "citus")]


async def apply(conn: asyncpg.Connection, directory: Path | None = None,
                citus: bool = False) -> list[str]:
    """Apply what is missing, in order; returns the names applied. Safe to run concurrently.
    citus: then the Citus mode's steps, which distribute the tables (docs/citus.md)."""
    migrations = discover(directory)
    if citus:
        migrations += citus_steps(directory)
    applied_now: list[str] = []
    await conn.execute(q(_SQL, "lock"), LOCK_CLASS_MIGRATE)
    try:
        await conn.execute(q(_SQL, "create_table"))
        done = {r["version"] for r in await conn.fetch(q(_SQL, "applied"))}
        for m in migrations:
            if m.version in done:
                continue
            async with conn.transaction():
                if m.version.startswith(_CITUS):
                    # Citus forwards a multi-statement string's DDL to the workers whole,
                    # which they refuse: one statement at a time.
                    for statement in statements(m.sql):
                        await conn.execute(statement)
                else:
                    await conn.execute(m.sql)
                await conn.execute(q(_SQL, "record"), m.version, m.name)
            log.info("migration.applied", migration=m.name)
            applied_now.append(m.name)
    finally:
        await conn.execute(q(_SQL, "unlock"), LOCK_CLASS_MIGRATE)
    return applied_now
