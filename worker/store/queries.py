"""Named SQL queries, read from the .sql files beside this module.

A file holds blocks that start with a line `-- name: some_name`; the text up to the next
such line is the query. A line `-- include: file.sql:name` is replaced by that block, so
one piece of SQL serves the queries that share its logic. `{bit.column}` stands for the
column's bit in a merge's mask (model.COLUMN_BIT): the SQL never spells the numbers. Values
always go as $n parameters.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from worker.model import COLUMN_BIT

_HERE = Path(__file__).parent
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^\s*--\s*include:\s*([\w.]+):(\w+)\s*$", re.MULTILINE)
_BIT = re.compile(r"\{bit\.(\w+)\}")


@cache
def load(filename: str) -> dict[str, str]:
    text = (_HERE / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    return {parts[i]: _BIT.sub(lambda m: str(COLUMN_BIT[m[1]]),
                               _INCLUDE.sub(lambda m: q(m[1], m[2]), parts[i + 1].strip()))
            for i in range(1, len(parts), 2)}


def q(filename: str, name: str) -> str:
    try:
        return load(filename)[name]
    except KeyError:
        raise KeyError(f"no query {name!r} in {filename}") from None
