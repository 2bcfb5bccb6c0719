"""Run a command; write its wall time, exit code and own peak RSS as JSON to a file.

Usage: python measure_child.py RESULT.json COMMAND [ARG ...]

The benchmark starts every measured child through this small process. On Linux a child's
ru_maxrss is at least the high-water RSS of the address space it was forked from (exec
records it), so a child forked straight from the benchmark, which holds the generated feed
and its samples, would report the benchmark's memory instead of its own. Forked from this
~10 MiB interpreter, it reports max(10 MiB, its own peak). Only the standard library here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    result_path, argv = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    with subprocess.Popen(argv) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"returncode": proc.returncode, "seconds": seconds, "maxrss_kib": usage.ru_maxrss}
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
