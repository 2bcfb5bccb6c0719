"""Long-running processes of the API benchmark (the API, the daemon, the minimal handler)
and its own RabbitMQ vhost."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import orjson

STOP_DEADLINE_S = 30.0


class StartError(Exception):
    """A process or the vhost could not be set up."""


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(cls, name: str, argv: list[str], env: Mapping[str, str],
                    log: Path) -> Child:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=dict(env))
        return cls(name, proc, log)

    async def event(self, name: str, deadline_s: float = 30.0) -> dict[str, Any]:
        """The first JSON log line of event `name` (waits for it, with a deadline)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            for line in self.log.read_bytes().splitlines():
                if name.encode() in line:
                    try:
                        found: dict[str, Any] = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if found.get("event") == name:
                        return found
            if self.proc.returncode is not None:
                raise StartError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
            await asyncio.sleep(0.05)
        raise StartError(f"{self.name}: no {name} in {deadline_s:g} s: {self.tail()}")

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_DEADLINE_S)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode if self.proc.returncode is not None else -1

    def tail(self, lines: int = 10) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def with_vhost(url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))


async def _ctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise StartError("rabbitmqctl is not installed: the benchmark makes its own vhost")
    proc = await asyncio.create_subprocess_exec(
        ctl, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise StartError(f"rabbitmqctl {' '.join(args)}: {text.strip()[-500:]}")
    return text


async def create_vhost(vhost: str, user: str) -> bool:
    """The benchmark's vhost (deleted first when a previous run left it), the user allowed
    everything in it; True when created (so that it is ours to delete)."""
    listed = (await _ctl("list_vhosts", "--quiet", "--no-table-headers")).split()
    if vhost in listed:
        await _ctl("delete_vhost", vhost)
    await _ctl("add_vhost", vhost)
    await _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return True


async def delete_vhost(vhost: str) -> None:
    await _ctl("delete_vhost", vhost)


def child_env(database_url: str, amqp_url: str, **more: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "AMQP_URL": amqp_url,
            "FEED_WORKER_LOG_FORMAT": "json", "FEED_WORKER_LOG_LEVEL": "warning",
            "FEED_WORKER_HTTP_PORT": "0", "FEED_WORKER_SCHEDULER": "false", **more}
