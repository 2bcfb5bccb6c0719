"""`feed-worker preview`: the head of a feed, mapped, as text tables; nothing is written.

The work is pipeline/preview.py's (the HTTP API calls it too); this module loads the feed,
prints the result and chooses the exit code: 0 the mapping works on the sample, 1 it
cannot (each problem one line on stderr), 2 the feed cannot be read at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from worker.claims import PULL_TYPES
from worker.errors import FeedError
from worker.pipeline import pull
from worker.pipeline.preview import Preview, Row, preview
from worker.settings import Settings
from worker.store import db, runs

CELL_WIDTH = 20  # characters of a value shown; longer ones end in "..."
GAP = "  "


async def run_preview(settings: Settings, feed_id: int, url: str | None, rows: int,
                      out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Prints the preview of feed `feed_id` (from `url`, else its resource_location)."""
    pool = await db.create_pool(settings.database_url, size=1)
    try:
        feed = await runs.load_feed(pool, feed_id)
    finally:
        await pool.close()
    try:
        if feed is None:
            raise FeedError(f"feed {feed_id} does not exist")
        if feed.resource_type not in PULL_TYPES:
            raise FeedError(f"feed {feed_id} has resource_type {feed.resource_type!r}: it is "
                            f"pushed, not read from a file (pulled: {', '.join(PULL_TYPES)})")
        result = await preview(feed, pull.feed_url(feed, url), settings, rows,
                               local_files=url is not None)
    except FeedError as exc:
        print(f"feed-worker preview: error: {exc}", file=err)
        return 2
    print(render(result), file=out)
    for problem in result.problems:
        print(f"feed-worker preview: error: {problem}", file=err)
    return 0 if result.ok else 1


def render(p: Preview, width: int = CELL_WIDTH) -> str:
    """The preview as text: what was read, the rows table, the coverage table, the
    warnings, and a last line with the verdict."""
    lines = [f"feed {p.feed_id} from {p.source}"]
    facts = [("format", p.format), ("compression", p.compression or "-"),
             ("encoding", p.encoding or "-")]
    if p.delimiter is not None:
        facts.append(("delimiter", repr(p.delimiter) + (" (sniffed)" if p.delimiter_sniffed
                                                         else "")))
    if p.header is not None:
        facts.append(("header", ", ".join(p.header)))
    if p.record_path is not None:
        facts.append(("record path", p.record_path or "(the document's top-level array)"))
    read = "the whole file" if p.complete else "the head of the file"
    facts.append(("read", f"{p.bytes_read:,} bytes ({read}); {len(p.rows)} record(s) shown"))
    if p.skipped:  # e.g. a Shopify export's image-only rows
        facts.append(("skipped", ", ".join(f"{n} {why}" for why, n in p.skipped.items())))
    lines += [f"{k:<12} {v}" for k, v in facts]
    if p.rows:
        lines += ["", *rows_table(p.rows, p.columns, width)]
    if p.coverage:
        lines += ["", *coverage_table(p)]
    if p.rules:
        lines.append("value rules: " + " ".join(f"{k}={v}" for k, v in sorted(p.rules.items())))
    lines += [f"warning: {w}" for w in p.warnings]
    lines.append("")
    lines.append("the mapping works on the sample" if p.ok else
                 f"the mapping cannot work: {len(p.problems)} problem(s)")
    return "\n".join(lines)


def rows_table(rows: Sequence[Row], columns: Sequence[str], width: int = CELL_WIDTH
               ) -> list[str]:
    """One line per record: its position, then each attribute's value cut to `width`; a
    rejected record gives its reason (in full) and the start of its text instead."""
    head = ["at", *columns]
    cells = [[str(r.position), *(cell(r.values.get(c, ""), width) for c in columns)]
             for r in rows]
    widths = [max([len(head[i]), *(len(c[i]) for c in cells)]) for i in range(len(head))]
    out = [_line(head, widths), _line(["-" * w for w in widths], widths)]
    for row, values in zip(rows, cells, strict=True):
        if row.reject is not None:
            raw = f"  ({cell(row.raw, 3 * width)})" if row.raw else ""
            out.append(f"{values[0]:>{widths[0]}}{GAP}rejected: {row.reject}{raw}")
        else:
            out.append(_line(values, widths, right=0))
    return out


def coverage_table(p: Preview) -> list[str]:
    """Per mapped attribute: its source, where the mapping got it, and the sampled records
    with a value; the attributes no record had (left as stored by a pull) on one line."""
    shown = [c for c in p.coverage if c.written]
    head = ["attribute", "source", "from", "with a value"]
    cells = [[c.attribute, cell(c.source, 2 * CELL_WIDTH), c.origin,
              f"{c.matched}/{c.sampled} {percent(c.matched, c.sampled)}"] for c in shown]
    widths = [max([len(head[i]), *(len(c[i]) for c in cells)]) for i in range(len(head))]
    out = [_line(head, widths), _line(["-" * w for w in widths], widths)]
    out += [_line(c, widths) for c in cells]
    # currency: a price's own code (105.29 USD) fills it where no column does
    absent = [f"{c.attribute} ({c.origin})" for c in p.coverage
              if not c.written and c.attribute not in p.columns]
    if absent:
        out.append(f"in no sampled record, left as stored: {', '.join(absent)}")
    return out


def percent(part: int, whole: int) -> str:
    """A share as a whole percentage; 100% only when it is all, 0% only when it is none."""
    if whole <= 0:
        return "-"
    share = 100 * part / whole
    shown = round(share)
    if shown == 100 and part < whole:
        shown = 99
    elif shown == 0 and part > 0:
        shown = 1
    return f"{shown}%"


def cell(value: str, width: int) -> str:
    """A value on one line (runs of whitespace, line breaks too, as one space), cut to
    `width` characters with "..." at the end."""
    text = " ".join(value.split())
    if len(text) <= width:
        return text
    return text[:max(0, width - 3)] + "..."


def _line(values: Sequence[str], widths: Sequence[int], right: int | None = None) -> str:
    parts = [f"{v:>{w}}" if i == right else f"{v:<{w}}"
             for i, (v, w) in enumerate(zip(values, widths, strict=True))]
    return GAP.join(parts).rstrip()
