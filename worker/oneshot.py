"""`feed-worker import`: one pull without the broker, with progress on the terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from worker import envelope, logs
from worker.claims import Claim, check_pullable, claim_pull
from worker.errors import BadMessage, FeedError, WorkerError
from worker.model import PullJob
from worker.pipeline import pull
from worker.settings import Settings
from worker.store import db, runs
from worker.urls import mask

if TYPE_CHECKING:
    from tqdm import tqdm

log = logs.get(__name__)


class _Progress:
    """The progress of a pull: on a terminal a bar (bytes; a total and a percentage when the
    transport announced the length; the page of a paginated pull; records read), drawn
    from the first byte on, with log lines written above it; otherwise a plain line every
    few seconds and one with the final counts, named as the run's summary names them."""

    EVERY_S = 2.0

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.bar: tqdm[Any] | None = None
        self.tick: tuple[int, int, int, int | None] = (0, 0, 1, None)
        self._printed: tuple[int, int, int, int | None] | None = None
        self._last = 0.0

    def __call__(self, nbytes: int, rows: int, page: int, total: int | None) -> None:
        self.tick = (nbytes, rows, page, total)
        if self.tty:
            self._draw()
        elif time.monotonic() - self._last >= self.EVERY_S:
            self._print()

    def write_above(self, line: str) -> None:
        """A log line: above the bar while one is drawn."""
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)

    def _draw(self) -> None:
        nbytes, rows, page, total = self.tick
        if self.bar is None:
            from tqdm import tqdm  # a terminal only: its import is a start-up cost otherwise

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                            file=self.out, desc="import", dynamic_ncols=True)
        bar = self.bar
        bar.set_description("import" if page == 1 else f"import page {page}", refresh=False)
        bar.set_postfix_str(f"rows_read={rows:,}", refresh=False)
        if nbytes < bar.n:  # a retry reads the file again from its first byte
            bar.reset(total=total)
        bar.total = total
        bar.update(nbytes - bar.n)
        bar.refresh()

    def _print(self) -> None:
        self._last = time.monotonic()
        if self.tick == self._printed:
            return
        self._printed = self.tick
        nbytes, rows, page, total = self.tick
        known = "" if total is None else (
            f" total_bytes={total} percent={100 * nbytes // total if total else 100}")
        pages = f" page={page}" if page > 1 else ""
        print(f"progress bytes={nbytes}{known} rows_read={rows}{pages}", file=self.out,
              flush=True)

    def close(self, finished: bool) -> None:
        """`finished`: the whole file was read (the bar ends at 100%)."""
        if self.bar is not None:
            if finished:
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()
            self.bar = None
        elif not self.tty and self.tick != (0, 0, 1, None):
            self._print()  # the last counts, as the summary gives them


async def run_import(settings: Settings, feed_id: int, url: str | None,
                     out: TextIO = sys.stderr, dry_run: bool = False, force: bool = False) -> int:
    """Exit code: 0 for a succeeded run (or a dry run), 1 for a failed or held one, 2 when
    none could start (the database does not answer, the feed cannot be pulled), 3 when
    the file was unchanged since the last pull (cache_imports) and was not read. A dry run
    records nothing, not even a run."""
    try:
        pool = await db.create_pool(settings.database_url, size=3)
    except WorkerError as exc:
        print(f"feed-worker import: error: {exc}", file=out)
        return 2
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
            print(f"feed-worker import: error: {exc}", file=out)
            return 2
        if claim.run_id is None:
            print(f"feed-worker import: error: {claim.skipped}", file=out)
            return 2
        job = PullJob(claim.run_id, claim.feed, target, settings.worker_id,
                           local_files=url is not None, force=force, dry_run=dry_run,
                           last_known=not dry_run, last_pull=claim.last)
        what = "dry run" if dry_run else f"run {job.run_id}"
        print(f"{what}: pulling feed {feed_id} from {mask(target)}", file=out, flush=True)
        progress = _Progress(out)
        # The summary below reports how the run ended: the log does not say it again.
        with logs.above(progress.write_above), \
                logs.reported_by_command("run.failed", "run.held", "run.skipped"):
            try:
                outcome = await envelope.execute(pool, settings, job, progress)
            except BaseException:
                progress.close(finished=False)
                raise
            progress.close(finished=outcome.status in FINISHED)
        if dry_run:
            print(dry_summary(outcome), file=out)
            return 0 if outcome.error is None or outcome.status == "dry-run" else 1
        row = await runs.get_run(pool, job.run_id)
        print(summary(row), file=out)
        return {"succeeded": 0, "skipped": 3}.get(outcome.status, 1)
    finally:
        await pool.close()


# Statuses of a run that read its whole file.
FINISHED = ("succeeded", "held", "dry-run")
# The word before a run's reason in the summary, by status.
_WHY = {"failed": "error", "held": "held", "skipped": "skipped"}


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
        line += f"\n{_WHY.get(str(run.get('status')), 'error')}: {run['error']}"
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
