"""SFTP pulls that log in with a private key (OpenSSH and PEM, with and without a
passphrase, alone or with the password) and check the host key against a pinned
fingerprint or known_hosts; every bad case fails its run with the reason, changes no item
and shows no secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh
import pytest
import structlog

from tests.support import feeds
from tests.support.sftpserver import PASSWORD, SFTPTestServer
from worker.settings import Settings

BODY = b"external_id,qty,name\n" + b"".join(b"K%d,%d,item %d\n" % (i, i, i) for i in range(50))
PASSPHRASE = "k3y:p@ss/phrase"
SECRETS_OF = ("PRIVATE KEY", PASSPHRASE, PASSWORD)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "feeds"
    top.mkdir()
    (top / "stock.csv").write_bytes(BODY)
    return top


@pytest.fixture
def user_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def rsa_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-rsa", key_size=2048)


@pytest.fixture
def key_dir(tmp_path: Path, user_key: asyncssh.SSHKey, rsa_key: asyncssh.SSHKey) -> Path:
    """The worker's keys: each format, with and without a passphrase."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "plain").write_bytes(user_key.export_private_key("openssh"))
    (keys / "locked").write_bytes(user_key.export_private_key("openssh", passphrase=PASSPHRASE))
    (keys / "locked.passphrase").write_text(PASSPHRASE + "\n")
    (keys / "pem").write_bytes(rsa_key.export_private_key("pkcs1-pem"))
    (keys / "pem-locked").write_bytes(rsa_key.export_private_key("pkcs8-pem",
                                                                 passphrase=PASSPHRASE))
    (keys / "pem-locked.passphrase").write_text(PASSPHRASE)
    (keys / "wrong-phrase").write_bytes(user_key.export_private_key("openssh",
                                                                    passphrase=PASSPHRASE))
    (keys / "wrong-phrase.passphrase").write_text("not the passphrase")
    (keys / "no-phrase").write_bytes(user_key.export_private_key("openssh",
                                                                 passphrase=PASSPHRASE))
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    (keys / "stranger").write_bytes(stranger.export_private_key("openssh"))
    return keys


async def _server(root: Path, **options: Any) -> SFTPTestServer:
    server = SFTPTestServer(root, **options)
    await server.start()
    return server


@pytest.fixture
async def key_server(root: Path, user_key: asyncssh.SSHKey,
                     rsa_key: asyncssh.SSHKey) -> AsyncIterator[SFTPTestServer]:
    """Keys only: no password login at all."""
    server = await _server(root, password=None, keys=[user_key, rsa_key])
    yield server
    await server.stop()


def _known_hosts(tmp_path: Path, server: SFTPTestServer) -> str:
    path = tmp_path / "known_hosts"
    path.write_text(server.known_hosts_line())
    return str(path)


def _settings(settings: Settings, key_dir: Path, known_hosts: str) -> Settings:
    return replace(settings, sftp_key_dir=str(key_dir), sftp_known_hosts=known_hosts)


async def _failed(pool: asyncpg.Pool, settings: Settings, feed_id: int) -> str:
    """Pull once more, expecting a failure: the table as it was, the reason without secrets."""
    before = await feeds.table_state(pool)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert await feeds.table_state(pool) == before
    error = str(run["error"])
    for secret in SECRETS_OF:
        assert secret not in error
        assert secret not in str(run["details"])
    return error


@pytest.mark.parametrize("key", ["plain", "locked", "pem", "pem-locked"])
async def test_key_logins_land_the_file(pool: asyncpg.Pool, settings: Settings,
                                        key_server: SFTPTestServer, key_dir: Path,
                                        tmp_path: Path, key: str) -> None:
    feed_id = await feeds.make_feed(pool, key_server.url("stock.csv"), mapping={"sftpKey": key})
    assert key_server.url("stock.csv").startswith("sftp://feeds@127")  # no password
    run = await feeds.pull_once(pool, _settings(settings, key_dir,
                                                _known_hosts(tmp_path, key_server)), feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 50
    assert key_server.logins == []  # no password was tried
    assert key_server.key_logins
    assert all(ok for _, _, ok in key_server.key_logins)


async def test_the_default_key_from_the_environment(pool: asyncpg.Pool, settings: Settings,
                                                    key_server: SFTPTestServer, tmp_path: Path,
                                                    user_key: asyncssh.SSHKey) -> None:
    """FEED_WORKER_SFTP_KEY holds the key's text (with its passphrase beside it), or the
    path of its file."""
    text = user_key.export_private_key("openssh", passphrase=PASSPHRASE).decode()
    known = _known_hosts(tmp_path, key_server)
    feed_id = await feeds.make_feed(pool, key_server.url("stock.csv"),
                                    mapping={"sftpKey": "default"})
    env = replace(settings, sftp_known_hosts=known, sftp_key=text, sftp_key_passphrase=PASSPHRASE)
    assert PASSPHRASE not in repr(env)
    assert "PRIVATE KEY" not in repr(env)
    run = await feeds.pull_once(pool, env, feed_id)
    assert run["status"] == "succeeded", run["error"]
    path = tmp_path / "id_ed25519"
    path.write_bytes(user_key.export_private_key("openssh"))
    (key_server.root / "stock.csv").write_bytes(BODY + b"K999,1,new\n")
    run = await feeds.pull_once(pool, replace(settings, sftp_known_hosts=known,
                                              sftp_key=str(path)), feed_id)
    assert (run["status"], run["inserted"]) == ("succeeded", 1), run["error"]


async def test_key_and_password_together(pool: asyncpg.Pool, settings: Settings, root: Path,
                                         user_key: asyncssh.SSHKey, key_dir: Path,
                                         tmp_path: Path) -> None:
    """A server that wants the key and then the password gets both; either alone fails."""
    server = await _server(root, keys=[user_key], both=True)
    try:
        known = _known_hosts(tmp_path, server)
        cfg = _settings(settings, key_dir, known)
        feed_id = await feeds.make_feed(pool, server.url("stock.csv"), mapping={"sftpKey": "plain"})
        run = await feeds.pull_once(pool, cfg, feed_id)
        assert run["status"] == "succeeded", run["error"]
        assert run["inserted"] == 50
        assert ("feeds", True) in server.logins
        assert any(ok for _, _, ok in server.key_logins)
        key_only = await feeds.make_feed(pool, server.url("stock.csv", password=""),
                                         mapping={"sftpKey": "plain"})
        assert "refused" in await _failed(pool, cfg, key_only)
        password_only = await feeds.make_feed(pool, server.url("stock.csv"))
        assert "with the password refused" in await _failed(pool, cfg, password_only)
    finally:
        await server.stop()


async def test_a_key_the_server_does_not_know(pool: asyncpg.Pool, settings: Settings,
                                              key_server: SFTPTestServer, key_dir: Path,
                                              tmp_path: Path) -> None:
    cfg = _settings(settings, key_dir, _known_hosts(tmp_path, key_server))
    good = await feeds.make_feed(pool, key_server.url("stock.csv"), mapping={"sftpKey": "plain"})
    assert (await feeds.pull_once(pool, cfg, good))["status"] == "succeeded"
    # The same feed, now with a key the server does not authorize: nothing changes.
    await pool.execute("UPDATE inventory_feeds SET mapping = '{\"sftpKey\": \"stranger\"}' "
                       "WHERE id = $1", good)
    (key_server.root / "stock.csv").write_bytes(b"external_id,qty,name\nK1,0,gone\n")
    error = await _failed(pool, cfg, good)
    assert "login as 'feeds' with the key 'stranger' refused" in error
    assert [ok for _, _, ok in key_server.key_logins][-1] is False


@pytest.mark.parametrize(("key", "reason"), [
    ("wrong-phrase", "the SFTP key 'wrong-phrase' (wrong-phrase in FEED_WORKER_SFTP_KEY_DIR) "
                     "cannot be decrypted: wrong passphrase (wrong-phrase.passphrase in "
                     "FEED_WORKER_SFTP_KEY_DIR)"),
    ("no-phrase", "the SFTP key 'no-phrase' (no-phrase in FEED_WORKER_SFTP_KEY_DIR) has a "
                  "passphrase, and the worker was given none (no-phrase.passphrase in "
                  "FEED_WORKER_SFTP_KEY_DIR)"),
    ("absent", "mapping.sftpKey names the SFTP key 'absent', but the worker does not hold it "
               "(no file absent in FEED_WORKER_SFTP_KEY_DIR)"),
])
async def test_a_key_that_cannot_be_used_fails_before_login(
        pool: asyncpg.Pool, settings: Settings, key_server: SFTPTestServer, key_dir: Path,
        tmp_path: Path, key: str, reason: str) -> None:
    cfg = _settings(settings, key_dir, _known_hosts(tmp_path, key_server))
    feed_id = await feeds.make_feed(pool, key_server.url("stock.csv"), mapping={"sftpKey": key})
    assert await _failed(pool, cfg, feed_id) == reason
    assert key_server.key_logins == []


async def test_no_key_directory(pool: asyncpg.Pool, settings: Settings,
                                key_server: SFTPTestServer) -> None:
    feed_id = await feeds.make_feed(pool, key_server.url("stock.csv"),
                                    mapping={"sftpKey": "plain"})
    assert "FEED_WORKER_SFTP_KEY_DIR" in await _failed(pool, settings, feed_id)


async def test_a_pinned_host_key(pool: asyncpg.Pool, settings: Settings,
                                 key_server: SFTPTestServer, key_dir: Path,
                                 tmp_path: Path) -> None:
    """The pin stands in for known_hosts (here an empty one); a different key is refused
    before any credential is sent, naming both fingerprints."""
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cfg = _settings(settings, key_dir, str(empty))
    pinned = await feeds.make_feed(pool, key_server.url("stock.csv"), mapping={
        "sftpKey": "plain", "sftpHostKey": key_server.fingerprint()})
    run = await feeds.pull_once(pool, cfg, pinned)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 50
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    mismatch = await feeds.make_feed(pool, key_server.url("stock.csv"), mapping={
        "sftpKey": "plain", "sftpHostKey": [other]})
    tries = len(key_server.key_logins)
    error = await _failed(pool, cfg, mismatch)
    assert (f"the host key of 127.0.0.1:{key_server.port} ({key_server.fingerprint()}) is not "
            f"the one the feed pins (mapping.sftpHostKey: {other})") in error
    assert len(key_server.key_logins) == tries  # no key was offered to it


async def test_an_unknown_host_key(pool: asyncpg.Pool, settings: Settings,
                                   key_server: SFTPTestServer, key_dir: Path,
                                   tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    feed_id = await feeds.make_feed(pool, key_server.url("stock.csv"),
                                    mapping={"sftpKey": "plain"})
    with structlog.testing.capture_logs() as logged:
        error = await _failed(pool, _settings(settings, key_dir, str(empty)), feed_id)
    assert (f"the host key of 127.0.0.1:{key_server.port} ({key_server.fingerprint()}) is not "
            f"trusted: known_hosts {empty} does not have it and the feed pins none "
            "(mapping.sftpHostKey)") in error
    assert key_server.key_logins == []
    for event in logged:
        for secret in SECRETS_OF:
            assert secret not in str(event)
