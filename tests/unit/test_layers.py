"""Layers: only worker/store/ talks SQL to Postgres; the rest of the package calls its
functions. Read from the source, so a query that reaches around the store fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import worker

PACKAGE = Path(worker.__file__).parent
STORE = PACKAGE / "store"
OUTSIDE = sorted(p for p in PACKAGE.rglob("*.py") if STORE not in p.parents)
# asyncpg's ways to send SQL or rows: a pool's or a connection's methods.
DATABASE_CALLS = {"fetch", "fetchrow", "fetchval", "execute", "executemany", "prepare",
                  "cursor", "copy_to_table", "copy_from_table", "copy_from_query",
                  "copy_records_to_table"}
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|TRUNCATE|COPY|"
                 r"MERGE|LOCK)\s")  # as the .sql files spell them


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported_names(tree: ast.Module) -> set[str]:
    """Names bound by import statements: modules and functions, never a connection."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def test_the_scan_sees_the_package() -> None:
    assert len(OUTSIDE) > 30
    assert PACKAGE / "publish.py" in OUTSIDE
    assert PACKAGE / "store" / "runs.py" not in OUTSIDE


@pytest.mark.parametrize("path", OUTSIDE, ids=_name)
def test_no_module_outside_the_store_imports_its_queries(path: Path) -> None:
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [f"{node.module}.{a.name}" for a in node.names] + [str(node.module)]
        else:
            continue
        assert "worker.store.queries" not in modules, f"{_name(path)}:{node.lineno}"


@pytest.mark.parametrize("path", OUTSIDE, ids=_name)
def test_no_module_outside_the_store_calls_q(path: Path) -> None:
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            assert name != "q", f"{_name(path)}:{node.lineno} asks for a query"


@pytest.mark.parametrize("path", OUTSIDE, ids=_name)
def test_no_module_outside_the_store_sends_sql(path: Path) -> None:
    """No fetch/execute/copy on a pool or a connection, and no SQL text; a module's own
    function of that name (`pull.execute`) is fine."""
    tree = _tree(path)
    imported = _imported_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            if isinstance(receiver, ast.Name) and receiver.id in imported:
                continue
            assert node.func.attr not in DATABASE_CALLS, (
                f"{_name(path)}:{node.lineno} calls .{node.func.attr}() outside worker/store/")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not SQL.match(node.value), f"{_name(path)}:{node.lineno} holds SQL"


# The floors of the house, ground first: a module imports from its own floor or below,
# never from above (README, Architecture). A module not listed fails the test, so that a
# new one is given its floor on purpose.
FLOORS: list[tuple[str, ...]] = [
    # ground: shapes and vocabulary, no I/O
    ("model", "constants", "errors", "logs", "metrics", "urls", "settings", "envfields",
     "settingscheck", "retry", "messages", "deadletters", "gcpause", "health", "presets",
     "coalesce", "sdnotify"),
    # side by side: the database, the parsers and values, the transports
    ("store", "parsers", "sources", "values", "columnar", "rules", "ruleparse", "mapping",
     "columns", "pushmap", "feedmapping", "rowshape", "fingerprints", "direct",
     "sourceopts"),
    # a pull's and a push's stages, and the broker
    ("pipeline", "lease", "claims", "broker", "failover", "notify"),
    # the workers: who runs what, and the commands' bodies
    ("runner", "envelope", "pusher", "scheduler", "publish", "replay", "retention", "oneshot",
     "admin", "api", "preview", "gauges"),
    # the process: the daemon's lifecycle and the command line
    ("daemon", "commands", "cli", "__main__"),
]


def _floor(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    for i, names in enumerate(FLOORS):
        if top in names:
            return i
    raise AssertionError(f"{module} has no floor: add it to FLOORS (and the README)")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                 or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_imports_from_a_floor_above_its_own(path: Path) -> None:
    here = _module(path)
    mine = _floor(here)
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("worker"):
            targets = ([f"worker.{a.name}" for a in node.names] if node.module == "worker"
                       else [node.module])
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("worker.")]
        else:
            continue
        for target in targets:
            if target == "worker.__version__":
                continue
            assert _floor(target) <= mine, (
                f"{here} (floor {mine}) imports {target} (floor {_floor(target)}), line "
                f"{node.lineno}")
