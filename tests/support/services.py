"""Where the test suite finds Postgres and RabbitMQ, and a loud failure when it cannot."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess

import aio_pika
import asyncpg
import pytest

ADMIN_DSN = os.environ.get("FEED_WORKER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# A test session works in a vhost of its own, made for it and deleted at its end (the
# tests declare and delete the worker's queues: those of another vhost, "/" included, are
# never touched), unless FEED_WORKER_TEST_AMQP names the broker and vhost to use.
OWN_VHOST = None if os.environ.get("FEED_WORKER_TEST_AMQP") else f"fw_test_{os.getpid()}"
AMQP_URL = (os.environ.get("FEED_WORKER_TEST_AMQP")
            or f"amqp://guest:guest@127.0.0.1:5672/{OWN_VHOST}")
RABBITMQCTL = os.environ.get("FEED_WORKER_TEST_RABBITMQCTL", "rabbitmqctl")


def dsn_for(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


async def admin(sql: str) -> None:
    """One statement on the server's maintenance database (CREATE or DROP DATABASE)."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _check_pg() -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    await conn.close()


async def _check_amqp() -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    await connection.close()


def _rabbitmqctl(*args: str) -> str:
    try:
        done = subprocess.run([RABBITMQCTL, *args], capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot run {RABBITMQCTL} to make the tests' own vhost ({exc}); install "
                    "RabbitMQ's CLI (apt-get install rabbitmq-server) or set "
                    "FEED_WORKER_TEST_AMQP to a vhost of your own", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{RABBITMQCTL} {' '.join(args)} failed ({done.stderr.strip()[-300:]}); "
                    "is RabbitMQ running? run `make services` or `rabbitmq-server -detached`, "
                    "or set FEED_WORKER_TEST_AMQP to a vhost of your own", pytrace=False)
    return done.stdout


_SESSION_VHOST = re.compile(r"fw_test_([0-9]+)")


def alive(pid: int) -> bool:
    """Whether a process of this machine has that id."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_sessions() -> list[str]:
    """Delete the vhosts that test sessions of this machine made and could not delete
    because they were killed (their process is gone); the names deleted."""
    listing = _rabbitmqctl("list_vhosts", "--quiet", "--no-table-headers", "name")
    gone = [name for name in listing.split()
            if (m := _SESSION_VHOST.fullmatch(name)) and not alive(int(m[1]))]
    for name in gone:
        _rabbitmqctl("delete_vhost", name)
    return gone


def make_vhost(name: str | None = OWN_VHOST) -> None:
    """The session's own vhost (nothing when FEED_WORKER_TEST_AMQP names one), after
    deleting those that killed sessions left behind; or the vhost `name` on the same
    broker."""
    if name is not None:
        if name == OWN_VHOST:
            forget_dead_sessions()
        _rabbitmqctl("add_vhost", name)
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


def drop_vhost(name: str | None = OWN_VHOST) -> None:
    if name is not None:
        _rabbitmqctl("delete_vhost", name)


def vhost_url(name: str) -> str:
    """AMQP_URL's broker and user, in vhost `name` (one made with make_vhost)."""
    return AMQP_URL.split("?", 1)[0].rsplit("/", 1)[0] + "/" + name


def require_services() -> None:
    """Fail (never skip) with the command that starts what is missing."""
    try:
        asyncio.run(_check_pg())
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_DSN} ({exc}); run "
                    "`make services` or `pg_ctlcluster 15 main start`", pytrace=False)
    make_vhost()
    try:
        asyncio.run(_check_amqp())
    except Exception as exc:
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL} ({exc}); run "
                    "`make services` or `rabbitmq-server -detached`", pytrace=False)
