"""wrk, the load generator of the API benchmark: one run with lua/parse_webhook.lua, and
what it measured (requests, latency percentiles, statuses)."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import orjson

SCRIPT = Path(__file__).with_name("lua") / "parse_webhook.lua"
MARK = "WRK_RESULT "


class WrkError(Exception):
    """wrk is missing or did not report."""


@dataclass(frozen=True)
class Load:
    """How wrk loads a server: the same for our API and the minimal handler."""

    connections: int
    threads: int
    seconds: float
    timeout_s: float = 5.0


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def count(self, *codes: int) -> int:
        return sum(self.statuses.get(c, 0) for c in codes)

    @property
    def others(self) -> dict[int, int]:
        """Answers that were not 200 or 202."""
        return {c: n for c, n in self.statuses.items() if c not in (200, 202)}


def binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed (apt-get install wrk; `make bench` does it)")
    return found


async def run(url: str, load: Load, token: str, per_request: int, keys: int,
              seed: int, log: Path) -> WrkResult:
    """PUT bodies of `per_request` variants (1: an object) to `url` for load.seconds."""
    argv = [binary(), "-t", str(load.threads), "-c", str(load.connections),
            "-d", f"{load.seconds:g}s", "--timeout", f"{load.timeout_s:g}s", "--latency",
            "-s", str(SCRIPT), url, "--", token, str(per_request), str(keys), str(seed)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ wrk ... {url} (per request {per_request})\n{text}\n")
    line = next((x for x in text.splitlines() if x.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        raise WrkError(f"wrk exited {proc.returncode} without a result:\n{text[-2000:]}")
    data = orjson.loads(line[len(MARK):])
    statuses: dict[int, int] = {}
    for part in data["statuses"]:
        for code, n in part.items():
            statuses[int(code)] = statuses.get(int(code), 0) + int(n)
    return WrkResult(
        requests=int(data["requests"]), seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1e3, p90_ms=data["p90_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3, max_ms=data["max_us"] / 1e3,
        errors={k[len("errors_"):]: int(v) for k, v in data.items()
                if k.startswith("errors_") and v},
        statuses=statuses)
