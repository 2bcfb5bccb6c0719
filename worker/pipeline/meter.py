"""A pull's download as it comes: its bytes counted (feed_runs.bytes), its deadline and its
least average rate kept, the run's own pauses for small runs aside (runner.SmallFirst)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from worker.errors import DeadlineExceeded
from worker.model import Feed, RunReport
from worker.settings import Settings


class DownloadMeter:
    def __init__(self, settings: Settings, feed: Feed, report: RunReport) -> None:
        self.settings = settings
        self.deadline_s = feed.download_deadline_s or settings.download_deadline_s
        self.report = report
        self.paused_s = 0.0  # the run paused for small runs (PullJob.turns), so far
        self._started: float | None = None  # the first page's download

    async def counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The bytes as downloaded (feed_runs.bytes), before any inflating; the download
        (all its pages) must end within its deadline and, after a grace period, keep an
        average rate (a server trickling bytes just under the read timeout would hold the
        run's slot for ever). The run's pauses count for neither."""
        settings, deadline_s = self.settings, self.deadline_s
        min_rate, grace_s = settings.min_transfer_bytes_per_s, settings.transfer_grace_s
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.time()
        start = self._started
        it = aiter(chunks)
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            while True:
                elapsed = loop.time() - start - self.paused_s
                left = deadline_s - elapsed
                # the latest the next bytes may come and keep the average at min_rate
                rate_left = (max(grace_s, self.report.bytes / min_rate) - elapsed
                             if min_rate else left)
                limit = asyncio.timeout(max(0.0, min(left, rate_left)))
                try:
                    async with limit:
                        chunk = await anext(it)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not limit.expired():
                        raise
                    self._too_slow(loop.time() - start - self.paused_s)
                    raise
                self.report.bytes += len(chunk)
                yield chunk

    def _too_slow(self, elapsed: float) -> None:
        got, rate = self.report.bytes, self.settings.min_transfer_bytes_per_s
        if elapsed >= self.deadline_s:
            raise DeadlineExceeded(
                f"the download took longer than its deadline of {self.deadline_s:g} s "
                f"({got:,} bytes received; FEED_WORKER_DOWNLOAD_DEADLINE_S, or the feed's "
                "download_deadline_s)")
        raise DeadlineExceeded(
            f"the download averaged {got / elapsed:,.0f} bytes/s over {elapsed:.0f} s "
            f"({got:,} bytes), below FEED_WORKER_MIN_TRANSFER_BYTES_PER_S ({rate:,})")
