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
