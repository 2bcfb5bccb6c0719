"""The pull benchmark's E and U against L', the stronger hand-written reference, in two
conditions.

L' is L (psql \\copy into a temp table + INSERT ... ON CONFLICT ... WHERE ... IS DISTINCT
FROM) inserting the staged rows in key order (sql/upsert_sorted.sql). Each path loads
feed1.csv into an empty table, then feed2.csv (10% changed) into the table it filled:

  quiesced      VACUUM ANALYZE + CHECKPOINT before each run: L'-empty, L'-full, E, U
  back to back  the empty load and the refresh one after the other with nothing between
                them (an hourly refresh does not wait for autovacuum): L'b-empty,
                L'b-full, Eb, Ub. Each path starts on the emptied table after a CHECKPOINT
                alone, so neither pays for the other's writes.

The reference goes first when quiesced, feed-worker first back to back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.bench import db
from tests.bench.report import Measurement, Target

if TYPE_CHECKING:
    from tests.bench.pull_csv import Bench

SCRIPT = "upsert_sorted.sql"
FEED = "L'"
TARGETS = (
    Target("E/L'", "feed-worker vs sorted psql upsert, empty, quiesced", "E", "L'-empty", 0.9),
    Target("U/L'", "feed-worker vs sorted psql upsert, full, quiesced", "U", "L'-full", 0.6),
    Target("Eb/L'b", "the same, empty table, back to back", "Eb", "L'b-empty", 0.9),
    Target("Ub/L'b", "the same, full table, back to back", "Ub", "L'b-full", 0.6),
    Target("L'e/Le", "psql upsert sorted vs in file order, empty table", "L'-empty", "L-empty",
           None),
    Target("L'f/Lf", "psql upsert sorted vs in file order, full table", "L'-full", "L-full",
           None),
)

# One path's run into the empty table (False) or the full one (True) -> its measurement.
Run = Callable[[bool], Awaitable[Measurement]]


@dataclass(frozen=True)
class Condition:
    suffix: str  # of the labels
    quiesced: bool  # VACUUM ANALYZE + CHECKPOINT before each run
    how: str  # of the runs' descriptions


CONDITIONS = (Condition("", True, ""), Condition("b", False, ", back to back"))


async def run(bench: Bench) -> None:
    """L', E and U, quiesced and back to back, alternating which path goes first."""
    bench.report.header.append(
        "E, U, L': VACUUM ANALYZE + CHECKPOINT before each run; Eb, Ub, L'b: back to back "
        "(a CHECKPOINT where a path starts, nothing between its empty load and its refresh)"
    )
    for cond in CONDITIONS:
        paths = (reference, feed_worker) if cond.quiesced else (feed_worker, reference)
        for path in paths:
            await path(bench, cond)


async def reference(bench: Bench, cond: Condition) -> None:
    label, what = f"L'{cond.suffix}", "psql sorted upsert"  # \\copy + INSERT ... ORDER BY ...
    runs = ((f"{label}-empty", f"{what}, empty table{cond.how}"),
            (f"{label}-full", f"{what}, full, 10% changed{cond.how}"))

    async def psql(full: bool) -> Measurement:
        return await bench.psql_run(*runs[full], SCRIPT, FEED, full)

    await pair(bench, cond, psql, runs[1])


async def feed_worker(bench: Bench, cond: Condition) -> None:
    runs = bench.imports(f"E{cond.suffix}", f"U{cond.suffix}", cond.how)

    async def imported(full: bool) -> Measurement:
        return await bench.feed_worker_import(runs[full])

    await pair(bench, cond, imported, (runs[1].label, runs[1].what))


async def pair(bench: Bench, cond: Condition, timed: Run, full: tuple[str, str]) -> None:
    """A path's empty load, then its refresh of the table it filled (`full`: its label and
    description, for the line that says it was not run)."""
    await db.reset(bench.conn)
    if cond.quiesced:
        await db.quiesce(bench.conn)
    else:
        await bench.conn.execute("CHECKPOINT")
    if (await timed(False)).seconds is None:
        note = "not run: the empty load did not succeed"
        bench.report.add(Measurement(*full, bench.files.rows, note=note, ok=False))
        return
    if cond.quiesced:
        await db.quiesce(bench.conn)
    await timed(True)
