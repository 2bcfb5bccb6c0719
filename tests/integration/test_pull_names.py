"""Pulls of files whose names change: a glob or a date template in the URL's file name,
over FTP, FTPS and SFTP (a directory of several dated files, listed) and HTTP (templates),
end to end into Postgres."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tests.support import feeds
from tests.support.feedserver import FeedServer
from tests.support.ftpserver import CertBundle, FTPTestServer, make_test_certs
from tests.support.sftpserver import SFTPTestServer
from worker.feedmapping import parse_mapping
from worker.model import Feed
from worker.pipeline.preview import preview as run_preview
from worker.settings import Settings
from worker.sources.names import FileRule
from worker.urls import mask

ZONE = "Pacific/Kiritimati"  # UTC+14: its day is another than UTC's most of the time
# Modification times: recent, so that `ls -l` lines (LIST) give them to the minute.
BASE = time.time() - 5 * 86400


def body(tag: str, rows: int = 50) -> bytes:
    """A file whose every row names it: the stored names tell which file a pull took."""
    return b"external_id,qty,name\n" + b"".join(
        b"K%d,%d,%s\n" % (i, i, tag.encode()) for i in range(rows))


def today(zone: str = ZONE) -> date:
    return FileRule(zone=zone).today()


def dated(day: date) -> str:
    return f"stock_{day:%Y%m%d}.csv"


def put(directory: Path, name: str, modified: float) -> None:
    path = directory / name
    path.write_bytes(body(name))
    os.utime(path, (modified, modified))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """out/: three dated files (the newest by name written first, so the oldest by
    time), a file of another name, and a directory that matches the glob."""
    top = tmp_path / "feeds"
    (top / "out" / "stock_99999999.csv").mkdir(parents=True)
    day = today()
    for back, hours in ((2, 1), (3, 2), (4, 3)):
        put(top / "out", dated(day - timedelta(days=back)), BASE + hours * 3600)
    put(top / "out", "other.csv", BASE + 86400)
    return top


async def taken(pool: asyncpg.Pool, feed_id: int) -> str:
    """The name of the file the feed's items came from."""
    names = {item["name"] for item in (await feeds.items(pool, feed_id)).values()}
    assert len(names) == 1, names
    return str(names.pop())


def details(run: dict[str, Any]) -> dict[str, Any]:
    return dict(orjson.loads(run["details"]))


@pytest.fixture
def ftp(root: Path) -> Iterator[FTPTestServer]:
    server = FTPTestServer(root)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def sftp(root: Path, tmp_path: Path, settings: Settings
               ) -> AsyncIterator[tuple[SFTPTestServer, Settings]]:
    server = SFTPTestServer(root)
    await server.start()
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line())
    yield server, replace(settings, sftp_known_hosts=str(known))
    await server.stop()


async def test_a_glob_over_ftp_takes_the_last_name_or_the_newest(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer) -> None:
    day = today()
    feed_id = await feeds.make_feed(pool, ftp.url("out/stock_*.csv"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    last = dated(day - timedelta(days=2))
    assert await taken(pool, feed_id) == last
    assert details(run)["file"] == mask(ftp.url(f"out/{last}"))
    assert details(run)["file_matches"] == 3
    assert ftp.password not in run["details"]
    assert "MLSD" in ftp.journal.snapshot("commands")

    newest = await feeds.make_feed(pool, ftp.url("out/stock_*.csv"), mapping={"pick": "newest"})
    run = await feeds.pull_once(pool, settings, newest)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, newest) == dated(day - timedelta(days=4))


async def test_a_date_template_over_ftp_takes_today_else_yesterday(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer, root: Path) -> None:
    day = today()
    mapping = {"timeZone": ZONE}
    feed_id = await feeds.make_feed(pool, ftp.url("out/stock_{date:%Y%m%d}.csv"),
                                    mapping=mapping)
    # Neither today's nor yesterday's file yet: the run fails and says what it looked for.
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert run["error"] == (
        "no file matching 'stock_{date:%Y%m%d}.csv' in "
        f"{mask(ftp.url('out/'))}: neither today's '{dated(day)}' nor yesterday's "
        f"'{dated(day - timedelta(days=1))}' in {ZONE} (4 files listed)")
    assert await feeds.items(pool, feed_id) == {}

    put(root / "out", dated(day - timedelta(days=1)), 1_700_000_000)
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, feed_id) == dated(day - timedelta(days=1))
    assert details(run)["file_date"] == (day - timedelta(days=1)).isoformat()

    put(root / "out", dated(day), 1_600_000_000)  # today's, whatever its time
    run = await feeds.pull_once(pool, settings, feed_id)
    assert (run["status"], run["updated"]) == ("succeeded", 50), run["error"]
    assert await taken(pool, feed_id) == dated(day)
    assert details(run)["file"] == mask(ftp.url(f"out/{dated(day)}"))


async def test_the_feed_time_zone_decides_which_day_is_today(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer, root: Path) -> None:
    west = "Etc/GMT+12"  # UTC-12: a day behind Kiritimati, always
    for zone in (ZONE, west):
        put(root / "out", dated(today(zone)), 1_700_000_000)
    for zone in (ZONE, west):
        feed_id = await feeds.make_feed(pool, ftp.url("out/stock_{date:%Y%m%d}.csv"),
                                        mapping={"timeZone": zone})
        run = await feeds.pull_once(pool, settings, feed_id)
        assert run["status"] == "succeeded", run["error"]
        assert await taken(pool, feed_id) == dated(today(zone))


async def test_no_file_matching_fails_the_run_and_changes_nothing(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer, root: Path) -> None:
    feed_id = await feeds.make_feed(pool, ftp.url("out/stock_*.csv"), fetch_cleanup="enabled")
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "succeeded"
    before = await feeds.table_state(pool)
    for path in (root / "out").glob("stock_2*.csv"):
        path.unlink()
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert run["error"] == (f"no file matching 'stock_*.csv' in {mask(ftp.url('out/'))} "
                            "(1 file listed)")
    assert await feeds.table_state(pool) == before


async def test_a_server_without_mlsd_is_listed_by_list(
        pool: asyncpg.Pool, settings: Settings, root: Path) -> None:
    server = FTPTestServer(root, disable=("MLSD",))
    server.start()
    try:
        feed_id = await feeds.make_feed(pool, server.url("out/stock_*.csv"))
        run = await feeds.pull_once(pool, settings, feed_id)
        assert run["status"] == "succeeded", run["error"]
        assert await taken(pool, feed_id) == dated(today() - timedelta(days=2))
        assert "LIST" in server.journal.snapshot("commands")
        newest = await feeds.make_feed(pool, server.url("out/stock_*.csv"),
                                       mapping={"pick": "newest"})
        run = await feeds.pull_once(pool, settings, newest)
        assert run["status"] == "succeeded", run["error"]
        assert await taken(pool, newest) == dated(today() - timedelta(days=4))
    finally:
        server.stop()


async def test_cache_imports_takes_a_new_file_of_another_name(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer, root: Path) -> None:
    feed_id = await feeds.make_feed(pool, ftp.url("out/stock_*.csv"), cache_imports=True)
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "succeeded"
    assert (await feeds.pull_once(pool, settings, feed_id))["status"] == "skipped"
    # the same size and time, another name: another file
    last = root / "out" / dated(today() - timedelta(days=2))
    newer = root / "out" / dated(today() - timedelta(days=1))
    newer.write_bytes(last.read_bytes())
    os.utime(newer, (last.stat().st_mtime, last.stat().st_mtime))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert details(run)["validators"]["file"] == mask(ftp.url(f"out/{newer.name}"))


@pytest.fixture
def certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CertBundle:
    bundle = make_test_certs(tmp_path / "certs", names=("localhost", "127.0.0.1"))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle.ca_file))  # the worker's system CAs
    return bundle


async def test_a_glob_over_ftps_lists_over_tls(pool: asyncpg.Pool, settings: Settings,
                                               root: Path, certs: CertBundle) -> None:
    server = FTPTestServer(root, certs=certs)
    server.start()
    try:
        feed_id = await feeds.make_feed(pool, server.url("out/stock_*.csv"),
                                        mapping={"pick": "newest"})
        run = await feeds.pull_once(pool, settings, feed_id)
        assert run["status"] == "succeeded", run["error"]
        assert await taken(pool, feed_id) == dated(today() - timedelta(days=4))
        assert details(run)["file"].startswith("ftps://")
    finally:
        server.stop()


async def test_patterns_over_sftp(pool: asyncpg.Pool, root: Path,
                                  sftp: tuple[SFTPTestServer, Settings]) -> None:
    server, settings = sftp
    day = today()
    newest = await feeds.make_feed(pool, server.url("/out/stock_*.csv"),
                                   mapping={"pick": "newest"})
    run = await feeds.pull_once(pool, settings, newest)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, newest) == dated(day - timedelta(days=4))
    assert details(run)["file"] == mask(server.url(f"/out/{dated(day - timedelta(days=4))}"))
    assert server.password not in run["details"]

    dated_feed = await feeds.make_feed(pool, server.url("/out/stock_{date:%Y%m%d}.csv"),
                                       mapping={"timeZone": ZONE})
    run = await feeds.pull_once(pool, settings, dated_feed)
    assert run["status"] == "failed"
    assert run["error"].startswith("no file matching 'stock_{date:%Y%m%d}.csv' in sftp://")
    put(root / "out", dated(day - timedelta(days=1)), 1_700_000_000)
    run = await feeds.pull_once(pool, settings, dated_feed)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, dated_feed) == dated(day - timedelta(days=1))


async def test_a_date_template_over_http(pool: asyncpg.Pool, settings: Settings,
                                         feed_server: FeedServer) -> None:
    day = today()
    yesterday = day - timedelta(days=1)
    url = feed_server.url("/f/stock_{date:%Y-%m-%d}.csv?day={date:%d.%m.%Y}")
    feed_id = await feeds.make_feed(pool, url, mapping={"timeZone": ZONE},
                                    fetch_cleanup="enabled")
    feed_server.add(f"/f/stock_{day - timedelta(days=2):%Y-%m-%d}.csv", body("old"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "failed"
    assert run["error"].startswith(
        f"no file at today's {feed_server.url(f'/f/stock_{day:%Y-%m-%d}.csv')}"
        f"?day={day:%d.%m.%Y} nor at yesterday's ")
    assert "HTTP 404" in run["error"]
    assert await feeds.items(pool, feed_id) == {}

    feed_server.add(f"/f/stock_{yesterday:%Y-%m-%d}.csv", body("yesterday"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, feed_id) == "yesterday"
    route = feed_server.routes[f"/f/stock_{yesterday:%Y-%m-%d}.csv"]
    assert route.queries == [f"day={yesterday:%d.%m.%Y}"]
    assert details(run)["file_date"] == yesterday.isoformat()

    feed_server.add(f"/f/stock_{day:%Y-%m-%d}.csv", body("today"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, feed_id) == "today"
    assert details(run)["file"] == f"{feed_server.url(f'/f/stock_{day:%Y-%m-%d}.csv')}" \
                                   f"?day={day:%d.%m.%Y}"


async def test_a_bad_pattern_setting_fails_before_any_download(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer) -> None:
    bad_zone = await feeds.make_feed(pool, ftp.url("out/stock_*.csv"),
                                     mapping={"timeZone": "Mars/Olympus"})
    run = await feeds.pull_once(pool, settings, bad_zone)
    assert run["status"] == "failed"
    assert "mapping.timeZone 'Mars/Olympus' is not a known time zone" in run["error"]
    bad_template = await feeds.make_feed(pool, ftp.url("out/stock_{date:%H}.csv"))
    run = await feeds.pull_once(pool, settings, bad_template)
    assert run["status"] == "failed"
    assert "%H is not a date's directive" in run["error"]
    assert ftp.journal.snapshot("connects") == []


async def test_preview_reads_the_file_a_pattern_takes(settings: Settings,
                                                      ftp: FTPTestServer) -> None:
    feed = Feed(id=7, name="f", enabled=True, resource_type="ftp_csv",
                resource_location=None, delimiter=None, csv_has_header=True,
                decimal_notation="decimal", encoding=None,
                mapping=parse_mapping({"pick": "newest"}, "ftp_csv"), provider_archived=False)
    result = await run_preview(feed, ftp.url("out/stock_*.csv"), settings, 3)
    assert result.ok, result.problems
    oldest_name = dated(today() - timedelta(days=4))
    assert result.source == mask(ftp.url(f"out/{oldest_name}"))
    assert result.rows[0].values["name"] == oldest_name


async def test_absolute_and_home_relative_directories(
        pool: asyncpg.Pool, settings: Settings, ftp: FTPTestServer,
        sftp: tuple[SFTPTestServer, Settings]) -> None:
    """ftp://host/%2Fout/... lists /out; sftp://host/~/... the login directory."""
    last = dated(today() - timedelta(days=2))
    feed_id = await feeds.make_feed(pool, ftp.url("%2Fout/stock_*.csv"))
    run = await feeds.pull_once(pool, settings, feed_id)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, feed_id) == last
    server, sftp_settings = sftp
    home = await feeds.make_feed(pool, server.url("/~/out/stock_*.csv"))
    run = await feeds.pull_once(pool, sftp_settings, home)
    assert run["status"] == "succeeded", run["error"]
    assert await taken(pool, home) == last
