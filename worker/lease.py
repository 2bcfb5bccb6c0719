"""A pull run's lease: renewed while the run works, so that another replica takes the run
over only when this one stopped (died, or shut down past its grace)."""

from __future__ import annotations

import asyncio

import asyncpg

from worker import logs
from worker.errors import LeaseLost
from worker.model import PullJob
from worker.retry import Failure, classify
from worker.retry import describe as describe_error
from worker.settings import Settings
from worker.store import runs

log = logs.get(__name__)


class Lease:
    """The run's lease, renewed every lease_s / 3 on a connection of its own until the
    run's last transaction. That transaction ends the run only while it is still ours
    (runs.finish_run, which locks the run's row); a renewal waiting on that lock would
    find the run ended, which is the run's own doing, not another replica taking it over.
    So the renewals end just before it (`end`)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, job: PullJob) -> None:
        self.pool, self.settings, self.job = pool, settings, job
        self._renewing = asyncio.Lock()
        self._ended = False

    async def keep(self) -> None:
        """Renew until `end`; raises LeaseLost when the run is no longer ours."""
        job = self.job
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            async with self._renewing:
                if self._ended:
                    return
                try:
                    ours = await runs.renew_lease(self.pool, job.run_id, job.owner,
                                                  self.settings.lease_s)
                except Exception as exc:  # the database away: the run's retries wait for it
                    if classify(exc) is Failure.PERMANENT:
                        raise
                    log.info("run.lease_not_renewed", run_id=job.run_id,
                             error=describe_error(exc))
                    continue
                if not ours:
                    raise LeaseLost(f"run {job.run_id} was taken over by another replica")

    async def end(self) -> None:
        """No renewal from now on; waits for the one in flight, if any."""
        async with self._renewing:
            self._ended = True
