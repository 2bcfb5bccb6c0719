"""FTPS pulls, explicit and implicit TLS, with the certificate checked against the
system's CAs, a feed's own CA bundle, or (opted out, and logged) not at all; every bad
case fails its run with the reason and changes no item."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aioftp
import asyncpg
import pytest
import structlog

from tests.support import feeds
from tests.support.ftpserver import (
    HOST,
    PASSWORD,
    CertBundle,
    FTPTestServer,
    make_self_signed_cert,
    make_test_certs,
)
from worker.settings import Settings

BODY = b"external_id,qty,name\n" + b"".join(b"S%d,%d,item %d\n" % (i, i, i) for i in range(40))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "feeds"
    top.mkdir()
    (top / "stock.csv").write_bytes(BODY)
    return top


@pytest.fixture
def self_signed(tmp_path: Path) -> CertBundle:
    return make_self_signed_cert(tmp_path / "self")


def _start(root: Path, certs: CertBundle, **options: Any) -> FTPTestServer:
    server = FTPTestServer(root, certs=certs, **options)
    server.start()
    return server


@pytest.fixture
def implicit(root: Path, self_signed: CertBundle) -> Iterator[FTPTestServer]:
    server = _start(root, self_signed, implicit=True)
    yield server
    server.stop()


@pytest.fixture
def explicit(root: Path, self_signed: CertBundle) -> Iterator[FTPTestServer]:
    server = _start(root, self_signed)
    yield server
    server.stop()


async def _failed(pool: asyncpg.Pool, settings: Settings, feed_id: int) -> str:
    before = await feeds.table_state(pool)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert await feeds.table_state(pool) == before
    assert PASSWORD not in str(run["error"])
    return str(run["error"])


async def test_implicit_ftps_with_the_feeds_ca_bundle(
        pool: asyncpg.Pool, settings: Settings, implicit: FTPTestServer,
        self_signed: CertBundle) -> None:
    bundle = self_signed.ca_file.read_text()
    feed_id = await feeds.make_feed(pool, implicit.url("stock.csv"),
                                    mapping={"ftpsMode": "implicit", "caBundle": bundle})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 40
    commands = implicit.journal.snapshot("commands")
    # TLS from the first byte: no AUTH TLS, the data channel protected before the login.
    assert "AUTH" not in commands
    assert commands[:4] == ["PBSZ", "PROT", "USER", "PASS"]
    assert "RETR" in commands


async def test_a_self_signed_certificate_without_the_bundle_fails(
        pool: asyncpg.Pool, settings: Settings, implicit: FTPTestServer,
        explicit: FTPTestServer) -> None:
    for server, mapping in ((implicit, {"ftpsMode": "implicit"}), (explicit, {})):
        feed_id = await feeds.make_feed(pool, server.url("stock.csv"), mapping=mapping)
        error = await _failed(pool, settings, feed_id)
        assert f"TLS certificate of 127.0.0.1:{server.port} not trusted" in error
        assert "self-signed certificate" in error
        assert "USER" not in server.journal.snapshot("commands")  # no password was sent


async def test_another_cas_bundle_does_not_trust_it(
        pool: asyncpg.Pool, settings: Settings, implicit: FTPTestServer, tmp_path: Path) -> None:
    other = make_test_certs(tmp_path / "other").ca_file.read_text()
    feed_id = await feeds.make_feed(pool, implicit.url("stock.csv"),
                                    mapping={"ftpsMode": "implicit", "caBundle": other})
    assert "not trusted" in await _failed(pool, settings, feed_id)


async def test_explicit_ftps_with_the_feeds_ca_bundle(
        pool: asyncpg.Pool, settings: Settings, explicit: FTPTestServer,
        self_signed: CertBundle) -> None:
    feed_id = await feeds.make_feed(pool, explicit.url("stock.csv"),
                                    mapping={"caBundle": self_signed.ca_file.read_text()})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert explicit.journal.snapshot("commands")[:3] == ["AUTH", "PBSZ", "PROT"]


@pytest.mark.parametrize("mode", ["implicit", "explicit"])
async def test_opting_out_of_certificate_checks_is_logged(
        pool: asyncpg.Pool, settings: Settings, implicit: FTPTestServer,
        explicit: FTPTestServer, mode: str) -> None:
    server = implicit if mode == "implicit" else explicit
    feed_id = await feeds.make_feed(pool, server.url("stock.csv"),
                                    mapping={"ftpsMode": mode, "tlsVerify": False})
    with structlog.testing.capture_logs() as logged:
        run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 40
    warnings = [e for e in logged if e["event"] == "source.tls_unverified"]
    assert warnings
    assert all(w["log_level"] == "warning" for w in warnings)
    assert warnings[0]["server"] == f"127.0.0.1:{server.port}"
    assert "***" in warnings[0]["source"]
    for event in logged:
        assert PASSWORD not in str(event)


async def test_implicit_tls_against_an_explicit_server_says_so(
        pool: asyncpg.Pool, settings: Settings, explicit: FTPTestServer,
        self_signed: CertBundle) -> None:
    feed_id = await feeds.make_feed(pool, explicit.url("stock.csv"), mapping={
        "ftpsMode": "implicit", "caBundle": self_signed.ca_file.read_text()})
    error = await _failed(pool, settings, feed_id)
    assert f"no implicit TLS at 127.0.0.1:{explicit.port}" in error
    assert "mapping.ftpsMode explicit" in error


async def test_explicit_tls_against_an_implicit_server_fails(
        pool: asyncpg.Pool, settings: Settings, implicit: FTPTestServer,
        self_signed: CertBundle) -> None:
    feed_id = await feeds.make_feed(pool, implicit.url("stock.csv"), mapping={
        "ftpsMode": "explicit", "caBundle": self_signed.ca_file.read_text()})
    assert "timed out during connect" in await _failed(pool, replace_timeouts(settings), feed_id)


async def test_a_server_that_starts_data_tls_only_after_retr(
        pool: asyncpg.Pool, settings: Settings, root: Path, self_signed: CertBundle) -> None:
    """As vsftpd: the worker sends RETR on the plain data connection and shakes hands after
    the 1xx reply, resuming the control connection's TLS session."""
    bundle = self_signed.ca_file.read_text()
    for implicit in (False, True):
        server = _start(root, self_signed, implicit=implicit, late_data_tls=True)
        try:
            feed_id = await feeds.make_feed(pool, server.url("stock.csv"), mapping={
                "caBundle": bundle, "ftpsMode": "implicit" if implicit else "explicit"})
            run = await feeds.pull_once(pool, settings, feed_id)
            assert run["status"] == "succeeded", run["error"]
            assert run["inserted"] == 40
        finally:
            server.stop()


async def test_aioftps_own_data_connection_cannot_read_from_such_a_server(
        root: Path, self_signed: CertBundle) -> None:
    """Why the worker opens its data connections itself: aioftp's shakes hands before it
    sends RETR, which such a server does not take (vsftpd: a handshake that never ends)."""
    server = _start(root, self_signed, late_data_tls=True)
    client = aioftp.Client(socket_timeout=1, connection_timeout=1)
    try:
        await client.connect(HOST, server.port)
        await client.upgrade_to_tls(self_signed.client_context())
        await client.login(server.user, server.password)
        with pytest.raises((TimeoutError, ConnectionResetError)):
            async with client.download_stream("stock.csv") as stream:
                await stream.read()
        assert "RETR" not in server.journal.snapshot("commands")
    finally:
        client.close()
        server.stop()


def replace_timeouts(settings: Settings) -> Settings:
    """An explicit client waits for a greeting that an implicit server never sends in
    clear: short timeouts keep that wait (and its retries) brief."""
    return replace(settings, fetch_connect_timeout_s=1.0, fetch_read_timeout_s=1.0,
                   pull_retry_attempts=1)
