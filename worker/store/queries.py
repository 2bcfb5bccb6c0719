"""Named SQL queries, read from the .sql files beside this module.

A file holds blocks that start with a line `-- name: some_name`; the text up to the next
such line is the query. A line `-- include: file.sql:name` is replaced by that block, so
one piece of SQL serves the queries that share its logic. `{bit.column}` stands for the
column's bit in a merge's mask (model.COLUMN_BIT): the SQL never spells the numbers. Values
always go as $n parameters. A block `some_name__citus` replaces `some_name` (also where it is
included) for a database distributed by Citus (docs/citus.md).
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
def load(filename: str, citus: bool = False) -> dict[str, str]:
    text = (_HERE / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    blocks = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}
    if citus:  # a block `name__citus` stands for `name` on a Citus cluster (docs/citus.md)
        blocks |= {name[:-len(CITUS)]: sql for name, sql in blocks.items()
                   if name.endswith(CITUS)}
        # Citus refuses volatile functions in writes that span shards (an UPDATE of a run
        # by its id): the statement's start stands for the clock there.
        blocks = {name: sql.replace("clock_timestamp()", "statement_timestamp()")
                  for name, sql in blocks.items()}

    def resolve(sql: str) -> str:  # an include of this file's own blocks is read here
        return _INCLUDE.sub(lambda m: resolve(blocks[m[2]]) if m[1] == filename
                            else q(m[1], m[2], citus), sql)

    return {name: _BIT.sub(lambda m: str(COLUMN_BIT[m[1]]), resolve(sql))
            for name, sql in blocks.items()}


CITUS = "__citus"


def q(filename: str, name: str, citus: bool = False) -> str:
    """The query `name` of the file; `citus`: as a Citus coordinator runs it."""
    try:
        return load(filename, citus)[name]
    except KeyError:
        raise KeyError(f"no query {name!r} in {filename}") from None
