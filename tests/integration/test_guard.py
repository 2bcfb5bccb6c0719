"""Feeds may only be fetched from allowed addresses. Only loopback addresses are used
here: 127.0.0.1 is allowed, everything else is refused before any connection is made, and
the address checked is the one connected to (HTTP, FTP, FTPS and SFTP alike)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from tests.support.ftpserver import CertBundle, FTPTestServer, make_test_certs
from tests.support.sftpserver import SFTPTestServer
from worker.settings import Settings

BODY = b"external_id,qty\nA,1\n"


@pytest.mark.parametrize("host", [
    "127.0.0.2",             # loopback, but not the allowed /32
    "2130706433",            # 127.0.0.1 as one decimal number: resolves, then refused
    "0x7f000002",            # hex notation
    "[::ffff:127.0.0.2]",    # IPv4-mapped IPv6
    "[::1]",
    "169.254.169.254",       # cloud metadata
    "10.0.0.1",
    "100.64.0.1",            # CGNAT
    "localhost",
])
async def test_addresses_outside_the_allowed_networks_are_refused(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, host: str) -> None:
    feed_server.add("/f.csv", BODY)
    # Names of 127.0.0.1 itself are refused under the default policy (global addresses).
    allowed = "" if host in ("2130706433", "localhost") else "127.0.0.1/32"
    strict = replace(settings, allowed_networks=allowed)
    feed_id = await feeds.make_feed(pool, f"http://{host}:{feed_server.port}/f.csv")
    run = await feeds.pull_once(pool, strict, feed_id)
    assert run["status"] == "failed"
    assert "not an allowed address" in run["error"]
    assert feed_server.routes["/f.csv"].requests == 0


async def test_the_allowed_network_is_served(pool: asyncpg.Pool, settings: Settings,
                                             feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]


async def test_by_default_only_global_addresses(pool: asyncpg.Pool, settings: Settings,
                                                feed_server: FeedServer) -> None:
    feed_id = await feeds.make_feed(pool, feed_server.add("/f.csv", BODY))
    run = await feeds.pull_once(pool, replace(settings, allowed_networks=""), feed_id)
    assert run["status"] == "failed"
    assert "127.0.0.1 is not an allowed address" in run["error"] or \
        "resolves to 127.0.0.1" in run["error"]
    assert feed_server.routes["/f.csv"].requests == 0


async def test_a_redirect_is_checked_before_it_is_followed(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    feed_server.add("/f.csv", BODY)
    feed_server.add("/moved.csv", redirect=f"http://127.0.0.2:{feed_server.port}/f.csv")
    feed_server.add("/hop.csv", redirect="/f.csv")
    feed_id = await feeds.make_feed(pool, feed_server.url("/moved.csv", "u", "secret9"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "127.0.0.2" in run["error"]
    assert feed_server.routes["/f.csv"].requests == 0
    run = await feeds.pull_once(pool, settings, feed_id, feed_server.url("/hop.csv"))
    assert run["status"] == "succeeded", run["error"]
    assert feed_server.routes["/f.csv"].requests == 1


@pytest.mark.parametrize(("literal", "reason"), [
    ("64:ff9b::7f00:1", "64:ff9b::7f00:1 (NAT64 of 127.0.0.1)"),
    ("2002:7f00:1::", "2002:7f00:1:: (6to4 of 127.0.0.1)"),
    ("::127.0.0.1", "::7f00:1 (IPv4-compatible of 127.0.0.1)"),
    ("::ffff:0:a9fe:a9fe", "::ffff:0:a9fe:a9fe (IPv4-translated of 169.254.169.254)"),
])
async def test_ipv6_forms_of_refused_ipv4_addresses_are_refused(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer, literal: str,
        reason: str) -> None:
    """Under the default policy (global addresses only): the run fails naming the form and
    the IPv4 address it reaches, before any connection."""
    feed_server.add("/f.csv", BODY)
    feed_id = await feeds.make_feed(pool, f"http://[{literal}]:{feed_server.port}/f.csv")
    run = await feeds.pull_once(pool, replace(settings, allowed_networks=""), feed_id)
    assert run["status"] == "failed"
    assert run["error"] == f"{reason} is not an allowed address (FEED_WORKER_ALLOWED_NETWORKS)"
    assert run["bytes"] == 0
    assert feed_server.routes["/f.csv"].requests == 0
    assert await feeds.items(pool, feed_id) == {}


async def test_a_redirect_to_a_nat64_loopback_is_refused(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer) -> None:
    """The redirect's address is checked like the feed URL's, embedded IPv4 and all: with
    127.0.0.1/32 allowed (the server), the NAT64 form of 127.0.0.2 is still refused."""
    feed_server.add("/f.csv", BODY)
    feed_server.add("/moved.csv", redirect=f"http://[64:ff9b::7f00:2]:{feed_server.port}/f.csv")
    feed_id = await feeds.make_feed(pool, feed_server.url("/moved.csv"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "64:ff9b::7f00:2 (NAT64 of 127.0.0.2) is not an allowed address" in run["error"]
    assert feed_server.routes["/moved.csv"].requests == 1
    assert feed_server.routes["/f.csv"].requests == 0
    assert await feeds.items(pool, feed_id) == {}


async def test_a_name_resolving_to_a_nat64_loopback_is_refused(
        pool: asyncpg.Pool, settings: Settings, feed_server: FeedServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through DNS: a name whose AAAA answer is 64:ff9b::7f00:1."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "nat64.feeds.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 ("64:ff9b::7f00:1", int(port or 0), 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    feed_server.add("/f.csv", BODY)
    feed_id = await feeds.make_feed(pool, f"http://nat64.feeds.test:{feed_server.port}/f.csv")
    run = await feeds.pull_once(pool, replace(settings, allowed_networks=""), feed_id)
    assert run["status"] == "failed"
    assert "nat64.feeds.test resolves to 64:ff9b::7f00:1 (NAT64 of 127.0.0.1)" in run["error"]
    assert lookups == ["nat64.feeds.test"]
    assert feed_server.routes["/f.csv"].requests == 0
    assert await feeds.items(pool, feed_id) == {}


# --- FTP, FTPS and SFTP: the address checked is the address connected to -----------------

FILE_BODY = b"external_id,qty\n" + b"".join(b"F%d,%d\n" % (i, i) for i in range(50))
BOTH_LOOPBACKS = "127.0.0.1/32,::1/128"  # `localhost` may name either


class RebindingDNS:
    """socket.getaddrinfo for one name answered first by the first answer, and by the
    second one afterwards (as a rebinding DNS server would); other names resolve as usual.
    An answer of None is the system's own."""

    def __init__(self, name: str, first: str | None, then: str) -> None:
        self.name, self.first, self.then = name, first, then
        self.lookups = 0
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0,
                 proto: int = 0, flags: int = 0) -> list[Any]:
        if host != self.name:
            return self._real(host, port, family, type, proto, flags)
        self.lookups += 1
        answer = self.first if self.lookups == 1 else self.then
        if answer is None:
            return self._real(host, port, family, type, proto, flags)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (answer, int(port or 0)))]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "feeds"
    top.mkdir()
    (top / "f.csv").write_bytes(FILE_BODY)
    return top


@pytest.fixture
def localhost_certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CertBundle:
    """A certificate for the name `localhost` only, its CA trusted as the system's."""
    certs = make_test_certs(tmp_path / "certs", names=("localhost",))
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    return certs


@pytest.fixture
async def servers(root: Path, localhost_certs: CertBundle
                  ) -> AsyncIterator[dict[str, FTPTestServer | SFTPTestServer]]:
    ftp = FTPTestServer(root)
    ftps = FTPTestServer(root, certs=localhost_certs)
    sftp = SFTPTestServer(root)
    ftp.start()
    ftps.start()
    await sftp.start()
    try:
        yield {"ftp": ftp, "ftps": ftps, "sftp": sftp}
    finally:
        ftp.stop()
        ftps.stop()
        await sftp.stop()


def by_name(kind: str, server: FTPTestServer | SFTPTestServer, settings: Settings,
            tmp_path: Path) -> tuple[str, Settings]:
    """The URL of the server under the name `localhost`, and settings that trust the SFTP
    host key under that name only (not under 127.0.0.1)."""
    if isinstance(server, SFTPTestServer):
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line("localhost"))
        return server.url("f.csv", host="localhost"), replace(settings,
                                                              sftp_known_hosts=str(known))
    return server.url("f.csv", host="localhost"), settings


def connections(server: FTPTestServer | SFTPTestServer) -> int:
    if isinstance(server, SFTPTestServer):
        return len(server.peers)
    return len(server.journal.snapshot("connects"))


@pytest.mark.parametrize("kind", ["ftp", "ftps", "sftp"])
async def test_ftp_and_sftp_connect_to_the_address_checked(
        pool: asyncpg.Pool, settings: Settings, servers: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """`localhost` is looked up once, checked, and connected to at that address: a later
    lookup would answer 127.0.0.2 (refused by the policy, and where nothing listens). TLS
    still verifies the certificate against the name, SFTP finds the host key under it;
    the size-and-time check (cache_imports) and the download go to the same address."""
    server = servers[kind]
    url, cfg = by_name(kind, server, replace(settings, allowed_networks=BOTH_LOOPBACKS),
                       tmp_path)
    dns = RebindingDNS("localhost", None, "127.0.0.2")
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    feed_id = await feeds.make_feed(pool, url, cache_imports=True)
    run = await feeds.pull_once(pool, cfg, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 50
    assert dns.lookups == 1
    assert connections(server) == 2  # the size-and-time check, then the download
    # The next pull looks the name up again, and is refused what the DNS answers now.
    second = await feeds.pull_once(pool, cfg, feed_id)
    assert second["status"] == "failed"
    assert "resolves to 127.0.0.2, which is not an allowed address" in second["error"]
    assert (dns.lookups, connections(server)) == (2, 2)


@pytest.mark.parametrize("kind", ["ftp", "ftps", "sftp"])
@pytest.mark.parametrize("first", ["127.0.0.2", None])
async def test_ftp_and_sftp_to_a_refused_address_never_connect(
        pool: asyncpg.Pool, settings: Settings, servers: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, kind: str, first: str | None) -> None:
    """The name's first answer is refused (127.0.0.2, outside 127.0.0.1/32; or the real
    127.0.0.1 when only global addresses are allowed): the run fails before any connection,
    though a second lookup would now answer the server's own address."""
    server = servers[kind]
    allowed = "127.0.0.1/32" if first else ""
    url, cfg = by_name(kind, server, replace(settings, allowed_networks=allowed), tmp_path)
    monkeypatch.setattr(socket, "getaddrinfo", RebindingDNS("localhost", first, "127.0.0.1"))
    feed_id = await feeds.make_feed(pool, url)
    run = await feeds.pull_once(pool, cfg, feed_id)
    assert run["status"] == "failed"
    assert "not an allowed address" in run["error"]
    assert connections(server) == 0
    assert await feeds.items(pool, feed_id) == {}
