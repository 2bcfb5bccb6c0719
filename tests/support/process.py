"""The daemon as a real process: started with `python -m worker run`, read by its JSON logs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

import orjson

from tests.support.services import AMQP_URL


class DaemonProcess:
    def __init__(self, database_url: str, worker_id: str, **env: str) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "AMQP_URL": AMQP_URL,
            "FEED_WORKER_HTTP_PORT": "0",
            "FEED_WORKER_LOG_FORMAT": "json",
            "FEED_WORKER_WORKER_ID": worker_id,
            "FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32",
            "FEED_WORKER_SCHEDULER": "false",  # test feeds are hourly; schedule tests turn it on
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read())
        await self.wait_event("daemon.started")

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                event = {"event": "raw", "line": line.decode(errors="replace")}
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_event(self, name: str, timeout_s: float = 30.0) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            async with self._changed:
                while True:
                    for e in self.events:
                        if e.get("event") == name:
                            return e
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"daemon exited before {name}: {self.events[-5:]}")
                    await self._changed.wait()

        return await asyncio.wait_for(found(), timeout_s)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            await self._reader
