"""Run a measured child process: wall time, exit code and its own peak RSS."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

MEASURE_CHILD = Path(__file__).with_name("measure_child.py")


@dataclass(frozen=True)
class ChildResult:
    argv: tuple[str, ...]
    returncode: int
    seconds: float
    max_rss_mib: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def run_child(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    stdin: Path | None = None,
) -> ChildResult:
    """Run argv to completion, stdout and stderr into `log`; blocking (use `run_child_async`).

    The child is started through measure_child.py, which times it and reads its own rusage.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    result_file = log.with_suffix(".rusage.json")
    result_file.unlink(missing_ok=True)
    wrapped = [sys.executable, "-I", str(MEASURE_CHILD), str(result_file), *argv]
    start = time.perf_counter()
    with ExitStack() as stack:
        out = stack.enter_context(log.open("wb"))
        inp = stack.enter_context(stdin.open("rb")) if stdin is not None else subprocess.DEVNULL
        proc = stack.enter_context(
            subprocess.Popen(wrapped, stdin=inp, stdout=out, stderr=subprocess.STDOUT, env=env)
        )
        proc.wait()
    if proc.returncode != 0 or not result_file.exists():  # the wrapper itself failed
        return ChildResult(tuple(argv), proc.returncode or 1, time.perf_counter() - start, 0, log)
    measured = json.loads(result_file.read_text())
    return ChildResult(
        argv=tuple(argv),
        returncode=measured["returncode"],
        seconds=measured["seconds"],
        max_rss_mib=measured["maxrss_kib"] / 1024,  # Linux reports KiB
        log=log,
    )


async def run_child_async(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    stdin: Path | None = None,
) -> ChildResult:
    """`run_child` in a thread, so this process's event loop keeps serving HTTP meanwhile."""
    return await asyncio.to_thread(run_child, argv, log=log, env=env, stdin=stdin)
