"""`feed-worker import`: one pull without the broker, with progress on the terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from worker import envelope, logs
from worker.claims import Claim, check_pullable, claim_pull
from worker.errors import BadMessage, FeedError
from worker.model import PullJob
from worker.pipeline import pull
from worker.settings import Settings
from worker.store import db, runs
from worker.urls import mask

if TYPE_CHECKING:
    from tqdm import tqdm

log = logs.get(__name__)


class _Progress:
    """A tqdm bar on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, out: TextIO, total: int | None = None) -> None:
        self.out = out
        self.tty = out.isatty()
        self.bar: tqdm[Any] | None = None
        if self.tty:
            from tqdm import tqdm  # a terminal only: its import is a start-up cost otherwise

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                            file=out, desc="import", dynamic_ncols=True)
        self._last = 0.0
        self._bytes = 0

    def __call__(self, nbytes: int, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(nbytes - self._bytes)
            self.bar.set_postfix(rows=f"{rows:,}", refresh=False)
        else:
            now = time.monotonic()
            if now - self._last >= 2.0:
                self._last = now
                print(f"progress bytes={nbytes} rows={rows}", file=self.out, flush=True)
        self._bytes = nbytes

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def run_import(settings: Settings, feed_id: int, url: str | None,
                     out: TextIO = sys.stderr, dry_run: bool = False, force: bool = False) -> int:
    """Exit code: 0 for a succeeded run (or a dry run), 1 for a failed or held one, 2 when
    none could start, 3 when the file was unchanged since the last pull (cache_imports) and
    was not read. A dry run records nothing, not even a run."""
    pool = await db.create_pool(settings.database_url, size=3)
    try:
        try:
            feed = check_pullable(await runs.load_feed(pool, feed_id), feed_id)
            target = pull.feed_url(feed, url)
            if dry_run:
                claim = Claim(0, feed)
            else:
                claim = await claim_pull(pool, feed_id, None, settings.worker_id,
                                         settings.lease_s, target, force=force)
        except (BadMessage, FeedError) as exc:
            print(f"error: {exc}", file=out)
            return 2
        if claim.run_id is None:
            print(f"error: {claim.skipped}", file=out)
            return 2
        job = PullJob(claim.run_id, claim.feed, target, settings.worker_id,
                           local_files=url is not None, force=force, dry_run=dry_run)
        what = "dry run" if dry_run else f"run {job.run_id}"
        print(f"{what}: pulling feed {feed_id} from {mask(target)}", file=out)
        progress = _Progress(out)
        try:
            outcome = await envelope.execute(pool, settings, job, progress)
        finally:
            progress.close()
        if dry_run:
            print(dry_summary(outcome), file=out)
            return 0 if outcome.error is None or outcome.status == "dry-run" else 1
        row = await runs.get_run(pool, job.run_id)
        print(summary(row), file=out)
        return {"succeeded": 0, "skipped": 3}.get(outcome.status, 1)
    finally:
        await pool.close()


_COUNTS = ("rows_read", "inserted", "updated", "unchanged", "zeroed", "connected", "ambiguous",
           "skipped", "rejected", "duplicates", "bytes")


def dry_summary(outcome: envelope.Outcome) -> str:
    r = outcome.report
    counts = " ".join(f"{k}={getattr(r, k)}" for k in _COUNTS)
    if outcome.status != "dry-run":
        return f"dry run {outcome.status}: {counts}\nerror: {outcome.error}"
    line = f"dry run (nothing was changed), it would have: {counts}"
    if outcome.error:
        line += f"\nheld: the run would be {outcome.error}"  # "held by the <rule> rule: ..."
    return line + rules_line(r.details)


def summary(run: dict[str, Any]) -> str:
    counts = " ".join(f"{k}={run.get(k)}" for k in _COUNTS)
    line = f"run {run.get('id')} {run.get('status')}: {counts} timings={run.get('timings')}"
    if run.get("error"):
        line += f"\nerror: {run['error']}"
    details = run.get("details")
    return line + rules_line(orjson.loads(details) if isinstance(details, str) else details)


def rules_line(details: dict[str, Any] | None) -> str:
    """What the feed's value rules changed or rejected (details.rules), as a line of its
    own; nothing when the feed has no rules."""
    counts = (details or {}).get("rules")
    if counts is None:
        return ""
    shown = " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing changed"
    return f"\nvalue rules: {shown}"
