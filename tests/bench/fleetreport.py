"""What the fleet benchmark measured, and its printed tables: the batches of runs, the
one-row pull's latency, the targets, the statements a small pull sends."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.bench import pglog
from tests.bench.pulls import Outcome, percentile

TARGET_FEEDS_S, TARGET_P50_MS, TARGET_HOL = 150.0, 5.0, 2.0
WHAT = 56  # width of the `what` column


@dataclass
class Row:
    """One batch of runs in the printed table."""

    label: str
    what: str
    feeds: int
    rows: int  # per feed
    result: Outcome | None = None
    ok: bool = True
    note: str = ""

    @property
    def seconds(self) -> float | None:
        return self.result.wall_s if self.result is not None else None

    def rate(self, per: str) -> float | None:
        """feeds/s or rows/s from the first publish to the last run finished."""
        if not self.ok or not self.seconds:
            return None
        return (self.feeds if per == "feeds" else self.feeds * self.rows) / self.seconds


@dataclass
class Report:
    rows: dict[str, Row] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)  # ms, sorted
    latency_pulls: int = 0
    counted: pglog.Counted | None = None
    counted_pulls: int = 0
    counted_rows: int = 1
    details: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    floors: dict[int, float] = field(default_factory=dict)  # D: connections -> feeds/s
    lane: int = 2  # the daemon's small pulls at once

    def add(self, row: Row) -> Row:
        self.rows[row.label] = row
        return row

    def render(self, header: list[str]) -> str:
        out = ["", *header]
        if self.rows:
            out += ["", f"{'run':<4} {'what':<{WHAT}} {'seconds':>8} {'feeds/s':>8} "
                    f"{'rows/s':>10} {'p50 s':>7} {'p95 s':>7} {'max s':>7}  check"]
        for r in self.rows.values():
            res, secs = r.result, r.seconds
            rate = (f"{r.feeds / secs:8,.1f} {r.feeds * r.rows / secs:10,.0f}" if secs
                    else f"{'-':>8} {'-':>10}")
            pct = " ".join(_num(res.pct(p) if res else None, 7, 2) for p in (50, 95, 100))
            out.append(f"{r.label:<4} {r.what:<{WHAT}} {_num(secs, 8, 2)} {rate} {pct}  "
                       f"{r.note}")
        if self.latency:
            out += ["", f"L: {self.latency_pulls} one-row pulls, one after the other (ms)",
                    f"  {'':<40} {'p50':>7} {'p99':>7} {'max':>7}"]
            for what, ms in self.latency.items():
                cells = " ".join(_num(percentile(ms, p), 7, 1) for p in (50, 99, 100))
                out.append(f"  {what:<40} {cells}")
        out += ["", f"{'target':<{WHAT}} {'value':>8}  {'wanted':<10} result", *self.targets()]
        if self.counted is not None:
            out += ["", f"T: what one pull of {self.counted_rows:,} row(s), unchanged, sends to "
                    f"Postgres (mean of {self.counted_pulls} pulls, from the server's log; the "
                    "daemon's scheduler left out)",
                    *pglog.render(self.counted, self.counted_pulls)]
        if self.details:
            out += ["", *self.details]
        if self.problems:
            out += ["", "problems:", *self.problems]
        return "\n".join(out)

    def targets(self) -> list[str]:
        """The targets of the parts that ran, then the reference figures measured."""
        out: list[str] = []

        def line(what: str, value: float | None, wanted: str = "",
                 ok: bool | None = None) -> None:
            verdict = "reference" if not wanted else (
                "n/a" if value is None else "met" if ok else "MISSED")
            out.append(f"{what:<{WHAT}} {_num(value, 8, 2)}  {wanted:<10} {verdict}")

        rows = self.rows
        if "A1" in rows:
            a1 = rows["A1"].rate("feeds")
            line("A1 feeds/s (first pulls)", a1, f">= {TARGET_FEEDS_S:g}",
                 a1 is not None and a1 >= TARGET_FEEDS_S)
        if self.latency:
            p50 = percentile(self.latency["publish -> finished_at"], 50)
            line("L one-row pull p50, publish -> finished (ms)", p50, f"<= {TARGET_P50_MS:g}",
                 p50 is not None and p50 <= TARGET_P50_MS)
        if "H0" in rows:
            h0, h1 = rows["H0"], rows.get("H1")
            p0 = h0.result.pct(95) if h0.ok and h0.result else None
            p1 = h1.result.pct(95) if h1 is not None and h1.ok and h1.result else None
            hol = p1 / p0 if p0 and p1 is not None else None
            line("H1 p95 / H0 p95 (small runs behind a big pull)", hol, f"<= {TARGET_HOL:g}",
                 hol is not None and hol <= TARGET_HOL)
        a1 = rows["A1"].rate("feeds") if "A1" in rows else None
        for connections, feeds_s in sorted(self.floors.items()):
            line(f"D feeds/s, the database alone, {connections} connections", feeds_s)
            if a1 is not None and connections == self.lane:
                line("A1 / D (the same concurrency)", a1 / feeds_s)
        ref = rows["R"].rate("rows") if "R" in rows else None
        for label in ("A2", "B1", "B2"):
            if label in rows:
                line(f"{label} feeds/s", rows[label].rate("feeds"))
        for label in ("A1", "A2", "B1", "B2"):
            got = rows[label].rate("rows") if label in rows else None
            if got is not None and ref:
                line(f"{label} rows/s / R rows/s (one big pull's rate)", got / ref)
        return out


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{value:{width},.{digits}f}" if value is not None else f"{'-':>{width}}"
