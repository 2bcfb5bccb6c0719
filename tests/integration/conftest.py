"""Fixtures of the integration tests that need the broker or daemon processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import broker
from tests.support.process import DaemonProcess


@pytest.fixture
async def clean_broker(services: None) -> None:
    """No worker queues: each test declares (through a daemon) and fills its own."""
    await broker.delete_topology()


@pytest.fixture
async def processes() -> AsyncIterator[list[DaemonProcess]]:
    """Daemon processes a test starts; killed at its end if still running."""
    started: list[DaemonProcess] = []
    yield started
    for p in started:
        await p.stop()
