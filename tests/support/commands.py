"""The `feed-worker` command as a user runs it: a real process against the test services."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.support.services import AMQP_URL


async def feed_worker(*args: str, database_url: str, **env: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `python -m worker ARGS`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", *args,
        env={**os.environ, "DATABASE_URL": database_url, "AMQP_URL": AMQP_URL,
             "FEED_WORKER_LOG_FORMAT": "json", "FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32",
             **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
