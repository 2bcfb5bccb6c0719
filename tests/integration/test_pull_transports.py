"""Pulls over FTP, FTPS-less FTP, SFTP and a local file, end to end into Postgres."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_cli import feed_worker
from tests.support import feeds
from tests.support.ftpserver import FTPTestServer
from tests.support.sftpserver import SFTPTestServer
from worker.settings import Settings

BODY = b"external_id,qty,name\n" + b"".join(b"T%d,%d,item %d\n" % (i, i, i) for i in range(3000))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "feeds"
    top.mkdir()
    (top / "stock.csv").write_bytes(BODY)
    (top / "stock.csv.gz").write_bytes(gzip.compress(BODY))
    return top


@pytest.fixture
def ftp(root: Path) -> Iterator[FTPTestServer]:
    server = FTPTestServer(root)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def sftp(root: Path) -> AsyncIterator[SFTPTestServer]:
    server = SFTPTestServer(root)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("name", ["stock.csv", "stock.csv.gz"])
async def test_pull_over_ftp(pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer,
                             name: str) -> None:
    feed_id = await feeds.make_feed(pool, ftp.url(name))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 3000
    assert ftp.password not in run["source"]


async def test_ftp_host_outside_the_allowed_networks(pool: asyncpg.Pool, settings: Settings,
                                                      ftp: FTPTestServer) -> None:
    feed_id = await feeds.make_feed(pool, ftp.url("stock.csv"))
    run = await feeds.pull_once(pool, replace(settings, allowed_networks=""), feed_id)
    assert run["status"] == "failed"
    assert "not an allowed address" in run["error"]


async def test_pull_over_sftp(pool: asyncpg.Pool, settings: Settings, sftp: SFTPTestServer,
                              tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sftp.port} "
                     f"{sftp.host_key.export_public_key().decode().strip()}\n")
    feed_id = await feeds.make_feed(pool, sftp.url("stock.csv"))
    run = await feeds.pull_once(pool, replace(settings, sftp_known_hosts=str(known)), feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == 3000
    # Without the server's key in known_hosts the run fails, and says why.
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    run = await feeds.pull_once(pool, replace(settings, sftp_known_hosts=str(empty)), feed_id)
    assert run["status"] == "failed"
    assert sftp.password not in run["error"]


async def test_import_of_a_local_file(pool: asyncpg.Pool, db_url: str, root: Path) -> None:
    feed_id = await feeds.make_feed(pool, None)
    url = (root / "stock.csv.gz").as_uri()
    code, _, err = await feed_worker("import", "--feed", str(feed_id), "--url", url,
                                     database_url=db_url)
    assert code == 0, err
    assert len(await feeds.items(pool, feed_id)) == 3000


async def test_a_feed_setting_may_not_read_local_files(pool: asyncpg.Pool, settings: Settings,
                                                       root: Path) -> None:
    feed_id = await feeds.make_feed(pool, (root / "stock.csv").as_uri())
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert "scheme 'file' is not supported" in run["error"]


async def test_cache_imports_over_ftp_compares_size_and_time(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer, root: Path) -> None:
    feed_id = await feeds.make_feed(pool, ftp.url("stock.csv"), cache_imports=True)
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "succeeded"
    second = await feeds.pull_once(pool, settings, feed_id)
    assert second["status"] == "skipped"
    assert "unchanged" in second["error"]
    (root / "stock.csv").write_bytes(BODY + b"T9999,1,new\n")
    third = await feeds.pull_once(pool, settings, feed_id)
    assert (third["status"], third["inserted"]) == ("succeeded", 1)
