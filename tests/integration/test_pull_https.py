"""HTTPS pulls with the certificate checked against the system's CAs, a feed's own CA
bundle (mapping.caBundle), or (opted out, and logged) not at all; an untrusted
certificate fails its run at once with the reason and changes no item."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import structlog

from tests.support import feeds
from tests.support.feedserver import FeedServer
from tests.support.ftpserver import CertBundle, make_self_signed_cert, make_test_certs
from worker.settings import Settings

BODY = b"external_id,qty,name\n" + b"".join(b"S%d,%d,item %d\n" % (i, i, i) for i in range(25))
PASSWORD = "https-feed-Secret-51c0"


@pytest.fixture
def certs(tmp_path: Path) -> CertBundle:
    return make_test_certs(tmp_path / "ca")


@pytest.fixture
async def tls_server(certs: CertBundle) -> AsyncIterator[FeedServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certs.cert_file))
    server = FeedServer(tls=context)
    await server.start()
    server.add("/stock.csv", BODY, auth=("acme", PASSWORD))
    yield server
    await server.stop()


def _url(server: FeedServer) -> str:
    return server.url("/stock.csv", "acme", PASSWORD)


async def test_the_feeds_ca_bundle_is_trusted(
        pool: asyncpg.Pool, settings: Settings, tls_server: FeedServer,
        certs: CertBundle) -> None:
    feed_id = await feeds.make_feed(pool, _url(tls_server),
                                    mapping={"caBundle": certs.ca_file.read_text()})
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 25
    assert tls_server.routes["/stock.csv"].requests == 1


@pytest.mark.parametrize("bundle", ["none", "another CA", "a self-signed certificate"])
async def test_a_certificate_the_feed_does_not_trust_fails_at_once(
        pool: asyncpg.Pool, settings: Settings, tls_server: FeedServer, tmp_path: Path,
        bundle: str) -> None:
    mapping = {} if bundle == "none" else {"caBundle": (
        make_test_certs(tmp_path / "other") if bundle == "another CA"
        else make_self_signed_cert(tmp_path / "self")).ca_file.read_text()}
    feed_id = await feeds.make_feed(pool, _url(tls_server), mapping=mapping)
    before = await feeds.table_state(pool)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert f"TLS certificate of 127.0.0.1:{tls_server.port} not trusted" in run["error"]
    assert "certificate verify failed" in run["error"] or "unable to get" in run["error"]
    assert PASSWORD not in str(run["error"])
    assert await feeds.table_state(pool) == before
    # not taken for a network fault: no retries, and no request reached the server
    assert tls_server.routes["/stock.csv"].requests == 0
    assert "attempts" not in (run["details"] or {})


async def test_opting_out_of_certificate_checks_is_logged(
        pool: asyncpg.Pool, settings: Settings, tls_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, _url(tls_server), mapping={"tlsVerify": False})
    with structlog.testing.capture_logs() as logged:
        run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    warnings = [e for e in logged if e["event"] == "source.tls_unverified"]
    assert [w["log_level"] for w in warnings] == ["warning"]
    assert warnings[0]["server"] == f"127.0.0.1:{tls_server.port}"
    assert PASSWORD not in str(logged)
