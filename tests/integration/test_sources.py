"""FTP, FTPS, SFTP and file:// sources against real servers on loopback (no database)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import asyncssh
import pytest

from tests.support.ftpserver import PASSWORD, CertBundle, FTPTestServer, make_test_certs
from tests.support.sftpserver import SFTPTestServer
from tests.support.wait import until
from worker.errors import FeedError, SourceError, TransientSourceError
from worker.settings import Settings
from worker.sources.download import Download, capped
from worker.sources.ftp import MIN_CHUNK_BYTES, ftp_stat, ftp_stream
from worker.sources.local import file_stream
from worker.sources.sftp import sftp_stat, sftp_stream
from worker.urls import FeedUrl

BODY = random.Random(7).randbytes(3 * 1024 * 1024 + 12345)
MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
MTIME_ISO = "2023-11-14T22:13:20Z"
WRONG = "wr0ng:p@ss/word"
T = TypeVar("T")
SECRETS = (PASSWORD, quote(PASSWORD, safe=""), WRONG, quote(WRONG, safe=""))


def cfg(**changes: object) -> Settings:
    base = replace(Settings(), fetch_connect_timeout_s=2.0, fetch_read_timeout_s=2.0)
    return replace(base, **changes)  # type: ignore[arg-type]


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


async def collect_into(stream: AsyncIterator[bytes], received: list[bytes]) -> None:
    async for chunk in stream:
        received.append(chunk)


def assert_no_secret(exc: BaseException) -> None:
    text = f"{exc!s} {exc!r}"
    for secret in SECRETS:
        assert secret not in text


def assert_chunked(chunks: list[bytes]) -> None:
    assert b"".join(chunks) == BODY
    assert len(chunks) >= 3
    assert all(MIN_CHUNK_BYTES <= len(c) <= 2 * 1024 * 1024 for c in chunks[:-1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    return make_test_certs(tmp_path_factory.mktemp("certs"), names=("localhost", "127.0.0.1"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "feeds"
    (top / "sub dir").mkdir(parents=True)
    for path in (top / "feed.csv", top / "sub dir" / "feed 1.csv"):
        path.write_bytes(BODY)
        os.utime(path, (MTIME, MTIME))
    return top


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so no one else takes it), not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
async def mute_port() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never says anything."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


def start_ftp(root: Path, **kwargs: object) -> FTPTestServer:
    server = FTPTestServer(root, **kwargs)  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture
def ftp_server(root: Path) -> Iterator[FTPTestServer]:
    server = start_ftp(root)
    yield server
    server.stop()


@pytest.fixture
def ftps_server(root: Path, certs: CertBundle) -> Iterator[FTPTestServer]:
    server = start_ftp(root, certs=certs)
    yield server
    server.stop()


@pytest.fixture
async def sftp_server(root: Path) -> AsyncIterator[SFTPTestServer]:
    server = SFTPTestServer(root)
    await server.start()
    yield server
    await server.stop()


# --- FTP -------------------------------------------------------------------------------


async def test_ftp_download(ftp_server: FTPTestServer) -> None:
    chunks = await collect(ftp_stream(FeedUrl.parse(ftp_server.url("feed.csv")), cfg()))
    assert_chunked(chunks)
    commands = ftp_server.journal.snapshot("commands")
    assert commands[:2] == ["USER", "PASS"]
    assert "RETR" in commands
    assert ftp_server.journal.snapshot("data_peers") == ["127.0.0.1"]
    await until(_async(lambda: ftp_server.journal.snapshot("disconnects")), timeout_s=5,
                what="the client to close its control connection")


async def test_ftp_empty_file(ftp_server: FTPTestServer, root: Path) -> None:
    (root / "empty.csv").write_bytes(b"")
    assert await collect(ftp_stream(FeedUrl.parse(ftp_server.url("empty.csv")), cfg())) == []
    assert "RETR" in ftp_server.journal.snapshot("commands")


async def test_ftp_percent_encoded_path(ftp_server: FTPTestServer) -> None:
    url = ftp_server.url("sub%20dir/feed%201.csv")
    assert b"".join(await collect(ftp_stream(FeedUrl.parse(url), cfg()))) == BODY


async def test_ftp_wrong_password(ftp_server: FTPTestServer) -> None:
    url = ftp_server.url("feed.csv", password=WRONG)
    with pytest.raises(SourceError) as caught:
        await collect(ftp_stream(FeedUrl.parse(url), cfg()))
    assert not isinstance(caught.value, TransientSourceError)
    assert "530" in str(caught.value)
    assert f"feeds:***@127.0.0.1:{ftp_server.port}/feed.csv" in str(caught.value)
    assert_no_secret(caught.value)
    assert "RETR" not in ftp_server.journal.snapshot("commands")


async def test_ftp_missing_file(ftp_server: FTPTestServer) -> None:
    with pytest.raises(SourceError) as caught:
        await collect(ftp_stream(FeedUrl.parse(ftp_server.url("nope.csv")), cfg()))
    assert not isinstance(caught.value, TransientSourceError)
    assert "550" in str(caught.value)
    assert "nope.csv" in str(caught.value)
    assert_no_secret(caught.value)


async def test_ftp_over_the_cap_by_size(ftp_server: FTPTestServer) -> None:
    with pytest.raises(SourceError, match="over the 1048576-byte cap") as caught:
        await collect(ftp_stream(FeedUrl.parse(ftp_server.url("feed.csv")),
                                 cfg(max_file_bytes=1 << 20)))
    assert not isinstance(caught.value, TransientSourceError)
    assert "RETR" not in ftp_server.journal.snapshot("commands")


async def test_ftp_over_the_cap_while_streaming(root: Path) -> None:
    server = start_ftp(root, disable=("SIZE",))
    try:
        received: list[bytes] = []
        url = FeedUrl.parse(server.url("feed.csv"))
        download = Download(url, 1 << 20)
        stream = capped(ftp_stream(url, cfg(max_file_bytes=1 << 20), download=download),
                        download)
        with pytest.raises(SourceError, match="passed the 1048576-byte cap"):
            await collect_into(stream, received)
        assert "RETR" in server.journal.snapshot("commands")
        assert sum(map(len, received)) <= 1 << 20
        await until(_async(lambda: server.journal.snapshot("disconnects")), timeout_s=5,
                    what="the client to close its control connection")
    finally:
        server.stop()


async def test_ftp_refused(refused_port: int) -> None:
    url = f"ftp://feeds:{quote(PASSWORD, safe='')}@127.0.0.1:{refused_port}/feed.csv"
    with pytest.raises(TransientSourceError, match=r"cannot connect to 127\.0\.0\.1") as caught:
        await collect(ftp_stream(FeedUrl.parse(url), cfg()))
    assert_no_secret(caught.value)


async def test_ftp_server_that_never_answers_times_out(mute_port: int) -> None:
    url = f"ftp://feeds:{quote(PASSWORD, safe='')}@127.0.0.1:{mute_port}/feed.csv"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TransientSourceError, match="timed out") as caught:
        await collect(ftp_stream(FeedUrl.parse(url), cfg(fetch_read_timeout_s=0.3)))
    assert loop.time() - started < 2
    assert_no_secret(caught.value)


async def test_ftp_transfer_broken_off_is_transient(root: Path) -> None:
    server = start_ftp(root, fail_after=400_000)
    try:
        with pytest.raises(TransientSourceError) as caught:
            await collect(ftp_stream(FeedUrl.parse(server.url("feed.csv")), cfg()))
        assert "426" in str(caught.value) or "ended after" in str(caught.value)
        assert_no_secret(caught.value)
    finally:
        server.stop()


async def test_ftp_stalled_transfer_times_out(root: Path) -> None:
    server = start_ftp(root, stall_after=600_000)
    try:
        received: list[bytes] = []
        stream = ftp_stream(FeedUrl.parse(server.url("feed.csv")), cfg(fetch_read_timeout_s=0.3))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransientSourceError, match="timed out during transfer"):
            await collect_into(stream, received)
        assert loop.time() - started < 2
        assert sum(map(len, received)) <= 600_000  # the bytes before the stall, at most
    finally:
        server.stop()


async def test_ftp_pasv_address_is_not_followed(root: Path) -> None:
    """The server says 'connect to 127.0.0.2'; the worker connects to the control peer."""
    trapped: list[str] = []

    async def trap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        trapped.append(str(writer.get_extra_info("peername")))
        writer.close()

    decoy = await asyncio.start_server(trap, "127.0.0.2", 0)
    port = decoy.sockets[0].getsockname()[1]
    server = start_ftp(root, masquerade_address="127.0.0.2", passive_port=port,
                       disable=("EPSV",))
    try:
        chunks = await collect(ftp_stream(FeedUrl.parse(server.url("feed.csv")), cfg()))
        assert b"".join(chunks) == BODY
        replies = server.journal.snapshot("replies")
        pasv = [r for r in replies if r.startswith("227")]
        assert pasv
        assert f"(127,0,0,2,{port // 256},{port % 256})" in pasv[0]
        assert server.journal.snapshot("commands").count("EPSV") == 1
        assert server.journal.snapshot("data_peers") == ["127.0.0.1"]
        assert trapped == []
    finally:
        server.stop()
        decoy.close()
        await decoy.wait_closed()


async def test_ftp_consumer_stopping_early_closes_the_connection(
        ftp_server: FTPTestServer) -> None:
    stream = ftp_stream(FeedUrl.parse(ftp_server.url("feed.csv")), cfg())
    first = await anext(stream)
    assert BODY.startswith(first)
    await stream.aclose()  # type: ignore[attr-defined]
    await until(_async(lambda: ftp_server.journal.snapshot("disconnects")), timeout_s=5,
                what="the server to see the control connection closed")


async def test_ftp_stat_uses_mlst(ftp_server: FTPTestServer) -> None:
    assert await ftp_stat(FeedUrl.parse(ftp_server.url("feed.csv")),
                          cfg()) == (len(BODY), MTIME_ISO)
    assert "MLST" in ftp_server.journal.snapshot("commands")
    assert "RETR" not in ftp_server.journal.snapshot("commands")


async def test_ftp_stat_falls_back_to_size_and_mdtm(root: Path) -> None:
    server = start_ftp(root, disable=("MLST",))
    try:
        assert await ftp_stat(FeedUrl.parse(server.url("sub%20dir/feed%201.csv")), cfg()) == (
            len(BODY), MTIME_ISO)
        commands = server.journal.snapshot("commands")
        assert "SIZE" in commands
        assert "MDTM" in commands
    finally:
        server.stop()


async def test_ftp_stat_missing_file(ftp_server: FTPTestServer) -> None:
    with pytest.raises(SourceError, match="550") as caught:
        await ftp_stat(FeedUrl.parse(ftp_server.url("nope.csv")), cfg())
    assert not isinstance(caught.value, TransientSourceError)


async def test_ftp_url_without_a_file_is_a_feed_error() -> None:
    with pytest.raises(FeedError, match="names no file"):
        await collect(ftp_stream(FeedUrl.parse("ftp://127.0.0.1:21/dir/"), cfg()))


async def test_ftp_connects_to_the_given_addresses_in_turn(ftp_server: FTPTestServer) -> None:
    """The checked addresses of the name, in order: one that refuses (nothing listens on
    127.0.0.2) gives way to the next; the name itself is not looked up."""
    url = ftp_server.url("feed.csv", host="no-such-name.invalid")
    chunks = await collect(ftp_stream(FeedUrl.parse(url),
                                      cfg(), addresses=["127.0.0.2", "127.0.0.1"]))
    assert b"".join(chunks) == BODY
    assert await ftp_stat(FeedUrl.parse(url),
                          cfg(), addresses=["127.0.0.1"]) == (len(BODY), MTIME_ISO)
    with pytest.raises(TransientSourceError, match=r"cannot connect to no-such-name\.invalid"):
        await collect(ftp_stream(FeedUrl.parse(url), cfg(), addresses=["127.0.0.2"]))


# --- FTPS (explicit TLS) -----------------------------------------------------------------


async def test_ftps_download(ftps_server: FTPTestServer, certs: CertBundle) -> None:
    chunks = await collect(ftp_stream(FeedUrl.parse(ftps_server.url("feed.csv")), cfg(),
                                      ssl_context=certs.client_context()))
    assert_chunked(chunks)
    commands = ftps_server.journal.snapshot("commands")
    # TLS before the credentials; the server also refuses unprotected data connections.
    assert commands[:5] == ["AUTH", "PBSZ", "PROT", "USER", "PASS"]
    assert ftps_server.journal.snapshot("data_peers") == ["127.0.0.1"]


async def test_ftps_by_host_name_checks_the_name_on_the_data_connection_too(
        root: Path, tmp_path: Path) -> None:
    """The certificate names only 'localhost': the data connection goes to the control
    peer's address (127.0.0.1) but must still verify the certificate against 'localhost'
    (the server resumes no sessions here, so the data handshake verifies it again)."""
    certs = make_test_certs(tmp_path / "certs", names=("localhost",))
    server = start_ftp(root, certs=certs, tls_resumption=False)
    try:
        url = server.url("feed.csv", host="localhost")
        chunks = await collect(ftp_stream(FeedUrl.parse(url),
                                          cfg(), ssl_context=certs.client_context()))
        assert b"".join(chunks) == BODY
        assert server.journal.snapshot("data_peers") == ["127.0.0.1"]
        with pytest.raises(SourceError, match="certificate"):  # the name is really checked
            await collect(ftp_stream(FeedUrl.parse(server.url("feed.csv")), cfg(),
                                     ssl_context=certs.client_context()))
    finally:
        server.stop()


async def test_ftps_verifies_certificates_by_default(ftps_server: FTPTestServer) -> None:
    with pytest.raises(SourceError, match="certificate") as caught:
        await collect(ftp_stream(FeedUrl.parse(ftps_server.url("feed.csv")), cfg()))
    assert not isinstance(caught.value, TransientSourceError)
    assert "USER" not in ftps_server.journal.snapshot("commands")
    assert_no_secret(caught.value)


async def test_ftps_wrong_password(ftps_server: FTPTestServer, certs: CertBundle) -> None:
    url = ftps_server.url("feed.csv", password=WRONG)
    with pytest.raises(SourceError, match="530") as caught:
        await collect(ftp_stream(FeedUrl.parse(url), cfg(), ssl_context=certs.client_context()))
    assert not isinstance(caught.value, TransientSourceError)
    assert_no_secret(caught.value)


async def test_ftps_against_a_plain_ftp_server_fails_clearly(
        ftp_server: FTPTestServer, certs: CertBundle) -> None:
    url = ftp_server.url("feed.csv", scheme="ftps")
    with pytest.raises(SourceError, match="does not support explicit TLS") as caught:
        await collect(ftp_stream(FeedUrl.parse(url), cfg(), ssl_context=certs.client_context()))
    assert not isinstance(caught.value, TransientSourceError)
    assert "USER" not in ftp_server.journal.snapshot("commands")  # no password in clear
    assert_no_secret(caught.value)


async def test_ftps_stat(ftps_server: FTPTestServer, certs: CertBundle) -> None:
    result = await ftp_stat(FeedUrl.parse(ftps_server.url("feed.csv")),
                            cfg(), ssl_context=certs.client_context())
    assert result == (len(BODY), MTIME_ISO)


# --- SFTP ----------------------------------------------------------------------------------


async def test_sftp_download(sftp_server: SFTPTestServer) -> None:
    chunks = await collect(sftp_stream(FeedUrl.parse(sftp_server.url("feed.csv")),
                                       cfg(), known_hosts=None))
    assert_chunked(chunks)
    assert sftp_server.logins == [("feeds", True)]


async def test_sftp_percent_encoded_path(sftp_server: SFTPTestServer) -> None:
    url = sftp_server.url("sub%20dir/feed%201.csv")
    assert b"".join(await collect(sftp_stream(FeedUrl.parse(url), cfg(), known_hosts=None))) == BODY


async def test_sftp_trusted_host_key(sftp_server: SFTPTestServer) -> None:
    chunks = await collect(sftp_stream(FeedUrl.parse(sftp_server.url("feed.csv")), cfg(),
                                       known_hosts=sftp_server.known_hosts()))
    assert b"".join(chunks) == BODY


async def test_sftp_unknown_host_key_is_refused(sftp_server: SFTPTestServer) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known = asyncssh.import_known_hosts(f"[127.0.0.1]:{sftp_server.port} {other}\n")
    with pytest.raises(SourceError, match="host key") as caught:
        await collect(sftp_stream(FeedUrl.parse(sftp_server.url("feed.csv")),
                                  cfg(), known_hosts=known))
    assert not isinstance(caught.value, TransientSourceError)
    assert sftp_server.logins == []  # the password was never sent
    assert_no_secret(caught.value)


async def test_sftp_wrong_password(sftp_server: SFTPTestServer) -> None:
    url = sftp_server.url("feed.csv", password=WRONG)
    with pytest.raises(SourceError, match="refused") as caught:
        await collect(sftp_stream(FeedUrl.parse(url), cfg(), known_hosts=None))
    assert not isinstance(caught.value, TransientSourceError)
    assert f"feeds:***@127.0.0.1:{sftp_server.port}" in str(caught.value)
    assert_no_secret(caught.value)
    assert ("feeds", False) in sftp_server.logins


async def test_sftp_missing_file(sftp_server: SFTPTestServer) -> None:
    with pytest.raises(SourceError, match="no such file") as caught:
        await collect(sftp_stream(FeedUrl.parse(sftp_server.url("nope.csv")),
                                  cfg(), known_hosts=None))
    assert not isinstance(caught.value, TransientSourceError)
    assert_no_secret(caught.value)


async def test_sftp_over_the_cap(sftp_server: SFTPTestServer) -> None:
    with pytest.raises(SourceError, match="over the 1048576-byte cap"):
        await collect(sftp_stream(FeedUrl.parse(sftp_server.url("feed.csv")),
                                  cfg(max_file_bytes=1 << 20),
                                  known_hosts=None))


async def test_sftp_refused(refused_port: int, sftp_server: SFTPTestServer) -> None:
    url = sftp_server.url("feed.csv", port=refused_port)
    with pytest.raises(TransientSourceError, match=r"cannot connect to 127\.0\.0\.1") as caught:
        await collect(sftp_stream(FeedUrl.parse(url), cfg(), known_hosts=None))
    assert_no_secret(caught.value)


async def test_sftp_server_that_never_answers_times_out(mute_port: int) -> None:
    url = f"sftp://feeds:{quote(PASSWORD, safe='')}@127.0.0.1:{mute_port}/feed.csv"
    with pytest.raises(TransientSourceError, match="timed out") as caught:
        await collect(sftp_stream(FeedUrl.parse(url),
                                  cfg(fetch_connect_timeout_s=0.3), known_hosts=None))
    assert_no_secret(caught.value)


async def test_sftp_consumer_stopping_early_closes_the_connection(
        sftp_server: SFTPTestServer) -> None:
    stream = sftp_stream(FeedUrl.parse(sftp_server.url("feed.csv")), cfg(), known_hosts=None)
    first = await anext(stream)
    assert BODY.startswith(first)
    assert sftp_server.open_connections() == 1
    await stream.aclose()  # type: ignore[attr-defined]
    await until(_async(lambda: sftp_server.open_connections() == 0), timeout_s=5,
                what="the server to see the SSH connection closed")


async def test_sftp_stat(sftp_server: SFTPTestServer) -> None:
    result = await sftp_stat(FeedUrl.parse(sftp_server.url("feed.csv")), cfg(), known_hosts=None)
    assert result == (len(BODY), MTIME_ISO)
    with pytest.raises(SourceError, match="no such file"):
        await sftp_stat(FeedUrl.parse(sftp_server.url("nope.csv")), cfg(), known_hosts=None)


async def test_sftp_connects_to_the_given_addresses_in_turn(
        sftp_server: SFTPTestServer) -> None:
    """As for FTP; the host key is still found under the URL's host name (known_hosts has
    no entry for the address here), and a key under another name is not trusted."""
    url = sftp_server.url("feed.csv", host="feeds.invalid")
    known = asyncssh.import_known_hosts(sftp_server.known_hosts_line("feeds.invalid"))
    chunks = await collect(sftp_stream(FeedUrl.parse(url), cfg(), known_hosts=known,
                                       addresses=["127.0.0.2", "127.0.0.1"]))
    assert b"".join(chunks) == BODY
    result = await sftp_stat(FeedUrl.parse(url), cfg(), known_hosts=known, addresses=["127.0.0.1"])
    assert result == (len(BODY), MTIME_ISO)
    other = asyncssh.import_known_hosts(sftp_server.known_hosts_line("other.invalid"))
    with pytest.raises(SourceError, match="host key"):
        await collect(sftp_stream(FeedUrl.parse(url),
                                  cfg(), known_hosts=other, addresses=["127.0.0.1"]))


# --- file:// -------------------------------------------------------------------------------


async def test_file_read(root: Path) -> None:
    url = (root / "sub dir" / "feed 1.csv").as_uri()
    chunks = await collect(file_stream(FeedUrl.parse(url), cfg()))
    assert b"".join(chunks) == BODY
    assert len(chunks) == 4
    assert all(len(c) == 1 << 20 for c in chunks[:-1])


async def test_file_missing(root: Path) -> None:
    missing = root / "nope.csv"
    with pytest.raises(SourceError, match="no such file") as caught:
        await collect(file_stream(FeedUrl.parse(missing.as_uri()), cfg()))
    assert str(missing) in str(caught.value)
    assert not isinstance(caught.value, TransientSourceError)


async def test_file_over_the_cap(root: Path) -> None:
    with pytest.raises(SourceError, match="over the 1048576-byte cap"):
        await collect(file_stream(FeedUrl.parse((root / "feed.csv").as_uri()),
                                  cfg(max_file_bytes=1 << 20)))


async def test_file_directory_and_relative_path(root: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        await collect(file_stream(FeedUrl.parse(root.as_uri()), cfg()))
    with pytest.raises(FeedError, match="another host"):
        await collect(file_stream(FeedUrl.parse("file://elsewhere/etc/hosts"), cfg()))


def _async(fn: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A sync check as the async callable tests.support.wait.until polls."""

    async def check() -> T:
        return fn()

    return check
