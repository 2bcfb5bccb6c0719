"""The push latency benchmark's measurements and its printed report (see push_latency)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

TARGET_RATE = 15_000       # single-variant messages/s, sustained
TARGET_P99_MS = 50.0       # at half of TARGET_RATE
KEPT_UP_SHARE = 0.95


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (Linux /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


# -- what was measured --------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass
class Step:
    rate: int
    label: str = "W"               # W: the daemon; R1: a bare aio-pika consumer
    sent: int = 0
    achieved: float = 0.0          # the publisher's rate
    lag_p99_ms: float = 0.0        # send time - scheduled time
    applied: int = 0
    sustained: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    upd_ms: list[float] = field(default_factory=list)
    per_group: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0           # wall time of the step, for the CPU shares
    busy: float | None = None      # the machine's CPUs: share busy, all processes

    @property
    def publisher_kept(self) -> bool:
        return self.achieved >= 0.99 * self.rate

    @property
    def kept_up(self) -> bool:
        return self.applied == self.sent and self.sustained >= KEPT_UP_SHARE * self.achieved


@dataclass
class Drain:
    label: str
    what: str
    messages: int
    variants: int
    seconds: float | None = None   # the daemon consumes (basic.consume) -> last commit
    per_group: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_per_message_us: float | None = None  # R1: the consumer's own
    busy: float | None = None

    @property
    def rate(self) -> float | None:
        return self.messages / self.seconds if self.seconds else None


class Results(Protocol):
    steps: list[Step]
    drains: list[Drain]
    notes: list[str]
    problems: list[str]


def _cpu(cpu: dict[str, float], seconds: float, busy: float | None) -> str:
    names = (("feed-worker", "daemon"), ("postgres-ours", "pg"), ("rabbitmq", "mq"),
             ("publisher", "pub"), ("bench", "bench"), ("postgres", "other pg"))
    shares = " ".join(f"{short} {100 * cpu.get(who, 0.0) / seconds:.0f}%" for who, short in names
                      if seconds)
    return shares + (f"; box {100 * busy:.0f}%" if busy is not None else "")


def _ms(values: list[float], p: float | None) -> str:
    if not values:
        return "-"
    v = max(values) if p is None else percentile(values, p)
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def render(bench: Results, header: list[str]) -> str:
    out = ["", *header, "",
           "steady single-variant messages (open loop); latency ms: send -> commit (R1: -> "
           "delivered to a bare aio-pika consumer); upd: send -> updated_at (transaction "
           "start); lag99: the publisher's send time - schedule; box: the machine's CPUs busy",
           f"{'run':<3} {'rate/s':>7} {'sent':>8} {'pub/s':>7} {'lag99':>6} {'applied':>8} "
           f"{'sustained':>9} {'kept up':>7} {'msg/grp':>7} {'p50':>7} {'p99':>7} {'max':>7} "
           f"{'upd p50':>7} {'upd p99':>7}  CPU (of one core)"]
    for s in bench.steps:
        out.append(
            f"{s.label:<3} {s.rate:>7,} {s.sent:>8,} {s.achieved:>7,.0f} {s.lag_p99_ms:>6.1f} "
            f"{s.applied:>8,} {s.sustained:>9,.0f} {'yes' if s.kept_up else 'NO':>7} "
            f"{(f'{s.per_group:.1f}' if s.per_group else '-'):>7} "
            f"{_ms(s.latencies_ms, 50):>7} {_ms(s.latencies_ms, 99):>7} "
            f"{_ms(s.latencies_ms, None):>7} {_ms(s.upd_ms, 50):>7} {_ms(s.upd_ms, 99):>7}  "
            f"{_cpu(s.cpu, s.seconds, s.busy)}")
    out += ["", "drains: a preloaded backlog, from the daemon's basic.consume to the last commit",
            f"{'run':<6} {'what':<32} {'messages':>9} {'seconds':>8} {'msg/s':>8} "
            f"{'items/s':>9} {'msg/grp':>7}  CPU (of one core)"]
    for d in bench.drains:
        rate = d.rate
        out.append(
            f"{d.label:<6} {d.what:<32} {d.messages:>9,} "
            f"{(f'{d.seconds:.2f}' if d.seconds else '-'):>8} "
            f"{(f'{rate:,.0f}' if rate else '-'):>8} "
            f"{(f'{rate * d.variants:,.0f}' if rate else '-'):>9} "
            f"{(f'{d.per_group:.1f}' if d.per_group else '-'):>7}  "
            f"{_cpu(d.cpu, d.seconds or 0.0, d.busy)}"
            + (f"; the consumer's CPU {d.cpu_per_message_us:.0f} us/msg"
               if d.cpu_per_message_us else ""))
    out += ["", f"{'target':<52} {'value':>14}  {'limit':<12} result"]
    drain = next((d for d in bench.drains if d.label == "drain"), None)
    top = next((s for s in bench.steps if s.rate == TARGET_RATE and s.label == "W"), None)
    half = next((s for s in bench.steps if s.rate == TARGET_RATE // 2 and s.label == "W"), None)
    floor = {s.rate: s for s in bench.steps if s.label == "R1"}

    def line(name: str, value: str, limit: str, ok: bool | None, other: str = "n/a") -> str:
        verdict = other if ok is None else "met" if ok else "NOT MET"
        return f"{name:<52} {value:>14}  {limit:<12} {verdict}"

    rate = drain.rate if drain else None
    out.append(line("single-variant msg/s sustained (drain)",
                    f"{rate:,.0f}" if rate else "-", f">= {TARGET_RATE:,}",
                    None if rate is None else rate >= TARGET_RATE))
    raw = next((d for d in bench.drains if d.label == "R1"), None)
    if raw and raw.rate:
        out.append(line("floor: aio-pika alone, consume + ack (R1)", f"{raw.rate:,.0f}",
                        "", None, "reference"))
    out.append(line(f"steady {TARGET_RATE:,} msg/s kept up (sustained/s)",
                    f"{top.sustained:,.0f}" if top else "-", "kept up",
                    None if top is None else top.kept_up))
    p99 = percentile(half.latencies_ms, 99) if half and half.latencies_ms else None
    out.append(line(f"p99 ms at {TARGET_RATE // 2:,} msg/s (send -> commit)",
                    f"{p99:,.1f}" if p99 is not None else "-", f"<= {TARGET_P99_MS:g}",
                    None if p99 is None else p99 <= TARGET_P99_MS and half is not None
                    and half.kept_up))
    for rate, f in sorted(floor.items()):
        if f.latencies_ms:
            out.append(line(f"floor: p99 ms at {rate:,} msg/s, aio-pika alone (R1)",
                            f"{percentile(f.latencies_ms, 99):,.1f}", "", None,
                            "kept up" if f.kept_up else "did NOT keep up"))
    ref = next((d for d in bench.drains if d.label == "D50"), None)
    if ref and ref.rate:
        out.append(line("50-variant items/s (D50)", f"{ref.rate * 50:,.0f}",
                        "not lower", None, "compare builds"))
    if bench.notes:
        out += ["", *bench.notes]
    if bench.problems:
        out += ["", "problems:", *bench.problems]
    return "\n".join(out)
