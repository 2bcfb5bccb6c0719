"""Named queries in worker/store/*.sql: each loads, is non-empty, and is named once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import worker
from worker.model import COLUMN_BIT, COLUMNS
from worker.store import queries
from worker.store.queries import load, q

PACKAGE = Path(worker.__file__).parent
STORE = Path(queries.__file__).parent
SQL_FILES = sorted(p.name for p in STORE.glob("*.sql"))
NAME_LINE = re.compile(r"^--\s*name\s*:\s*(\S*)", re.MULTILINE | re.IGNORECASE)


def _declared(filename: str) -> list[str]:
    return NAME_LINE.findall((STORE / filename).read_text(encoding="utf-8"))


def _code(sql: str) -> str:
    """The SQL without its comment lines."""
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))


def test_there_are_query_files() -> None:
    assert {"migrate.sql", "pull.sql", "runs.sql"} <= set(SQL_FILES)


@pytest.mark.parametrize("filename", SQL_FILES)
def test_names_are_unique(filename: str) -> None:
    names = _declared(filename)
    assert names, f"{filename} names no query"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert duplicates == [], f"{filename} names these twice: {duplicates}"


@pytest.mark.parametrize("filename", SQL_FILES)
def test_every_declared_name_loads(filename: str) -> None:
    """Also catches a `-- Name: x` or `-- name: x-y` line the loader would not see."""
    assert sorted(load(filename)) == sorted(_declared(filename))


@pytest.mark.parametrize("filename", SQL_FILES)
def test_every_query_is_non_empty(filename: str) -> None:
    for name, sql in load(filename).items():
        assert _code(sql).strip(), f"{filename}: query {name} is empty"
        assert q(filename, name) == sql


def test_unknown_name_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="no_such_query"):
        q("runs.sql", "no_such_query")


def test_every_query_the_code_asks_for_exists() -> None:
    """Every module of the package that calls q(), wherever it is: each call names its
    file through the module's `_SQL` or as a literal, and the file has that query."""
    used = 0
    for module in sorted(PACKAGE.rglob("*.py")):
        if module == Path(queries.__file__):
            continue  # the loader itself: its q() calls are the includes
        source = module.read_text(encoding="utf-8")
        calls = len(re.findall(r"\bq\(", source))
        if not calls:
            continue
        where = module.relative_to(PACKAGE.parent)
        files = re.findall(r'^_SQL\s*=\s*"([^"]+)"', source, re.MULTILINE)
        asked = [(files[0] if len(files) == 1 else "", name)
                 for name in re.findall(r'\bq\(\s*_SQL\s*,\s*"(\w+)"', source)]
        if asked:
            assert len(files) == 1, f"{where}: which .sql file does it use?"
        asked += re.findall(r'\bq\(\s*"([\w.]+)"\s*,\s*"(\w+)"', source)
        assert len(asked) == calls, f"{where}: a q() call names no file and query"
        missing = sorted(f"{f}:{n}" for f, n in asked if n not in load(f))
        assert missing == [], f"{where} asks for {missing}"
        used += len(asked)
    assert used >= 10


def test_staging_columns_follow_mapping_columns() -> None:
    sql = _code(load("pull.sql")["create_staging"])
    body = sql[sql.index("pull_staging (") + len("pull_staging ("):sql.index(") ON COMMIT")]
    columns = [line.split()[0] for line in body.splitlines() if line.strip()]
    assert columns == ["pos", "external_id", *COLUMNS, "fingerprint"]


@pytest.mark.parametrize(("filename", "name"), [("pull_merge.sql", "merge_paired"),
                                                ("push_merge.sql", "body")])
def test_merge_mask_bits_are_named_after_their_columns(filename: str, name: str) -> None:
    """The merges name each mask bit by its column ({bit.name}, filled in from COLUMN_BIT):
    no bit is written as a number, each names the column its CASE writes, and every column
    has its bit used."""
    raw = _code((STORE / filename).read_text(encoding="utf-8"))
    assert re.findall(r"& \d+", raw) == []
    pairs = re.findall(r"\{bit\.(\w+)\}\)? <> 0 THEN (?:coalesce\()?(?:[sj]\.|t\.extra \|\| "
                       r"coalesce\([sj]\.)(\w+)", raw)
    pairs += re.findall(r"\{bit\.(\w+)\}\)? = 0 OR [^\n]*\n\s*THEN t\.\w+ ELSE [sj]\.(\w+)",
                        raw)
    assert pairs, filename
    assert all(bit == column for bit, column in pairs), [p for p in pairs if p[0] != p[1]]
    assert {bit for bit, _ in pairs} == set(COLUMN_BIT)
    merge = load(filename)[name]
    assert "{bit." not in merge
    assert str(COLUMN_BIT["currency"]) in merge
