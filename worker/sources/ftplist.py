"""A directory's listing over FTP(S), for a feed URL whose file name is a pattern
(sources/names.py): MLSD (names, types, sizes and modification times in UTC), else, on a
server without it, LIST as aioftp parses it (Unix `ls -l` lines and the like: times to the
minute or the day, in the server's clock; lines it cannot parse are left out). The data
connection is opened as a download's is (sources/ftpconn.py: to the control peer, TLS
when the control connection has it)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import aioftp

from worker.errors import SourceError
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sources.ftp import CHUNK_BYTES, _ftp_time
from worker.sources.ftpconn import HANDLED, Session, close_writers, int_or_none, target
from worker.sources.names import Entry
from worker.urls import FeedUrl

MAX_LISTING_BYTES = 16 << 20  # a listing longer than this (some 200,000 names) fails
_NOT_SUPPORTED = ("500", "501", "502", "504")


def directory_of(path: str) -> str:
    """The directory of a target's path: `dir/a.csv` -> `dir`, `/a.csv` -> `/`, `a.csv` ->
    "" (the login directory)."""
    head, sep, _ = path.rpartition("/")
    return head or sep


async def ftp_list(url: FeedUrl, settings: Settings, *,
                   ssl_context: ssl.SSLContext | None = None,
                   options: SourceOptions | None = None,
                   addresses: Sequence[str] | None = None) -> list[Entry]:
    """The entries of the directory of the URL's file (its name is not looked at);
    `options` as for ftp_stream."""
    t = target(url, options)
    session = Session(t, settings, ssl_context, addresses)
    directory = directory_of(t.path)
    try:
        await session.login()
        await session.client.command("TYPE I", "200")
        try:
            text = await _listing(session, f"MLSD {directory}".rstrip())
            entries = [_mlsd_entry(line) for line in text.splitlines()]
        except aioftp.StatusCodeError as exc:
            if exc.received_codes[-1] not in _NOT_SUPPORTED:
                raise
            text = await _listing(session, f"LIST {directory}".rstrip())
            entries = [_list_entry(session.client, line) for line in text.splitlines()]
        await session.quit()
        return [e for e in entries if e is not None]
    except HANDLED as exc:
        converted = session.convert(exc)
        if converted is None:
            raise
        raise converted from None
    finally:
        await session.close()


async def _listing(session: Session, command: str) -> str:
    reader, data = await session.retrieve(command)
    try:
        received = bytearray()
        while block := await asyncio.wait_for(reader.read(CHUNK_BYTES),
                                              session.settings.fetch_read_timeout_s):
            received += block
            if len(received) > MAX_LISTING_BYTES:
                raise SourceError(f"{session.t.shown}: the directory's listing is longer "
                                  f"than {MAX_LISTING_BYTES:,} bytes")
    finally:
        await close_writers(data)
    await session.client.command(None, "2xx", "1xx")
    return received.decode("utf-8", errors="replace")


def _mlsd_entry(line: str) -> Entry | None:
    """One MLSD line (`type=file;size=12;modify=20261205060000; stock.csv`: facts, a
    space, the name); None for the directory itself, its parent, or a line that is not
    one."""
    facts_part, sep, name = line.rstrip("\r\n").partition(" ")
    if not sep or not name or (facts_part and "=" not in facts_part):
        return None
    facts = {}
    for fact in facts_part.split(";"):
        key, eq, value = fact.partition("=")
        if eq:
            facts[key.strip().lower()] = value.strip()
    kind = facts.get("type", "file").lower()
    if kind in ("cdir", "pdir"):
        return None
    modified = _ftp_time(facts["modify"]) if "modify" in facts else None
    return Entry(name, modified, int_or_none(facts.get("size", "")), is_file=kind != "dir")


def _list_entry(client: aioftp.Client, line: str) -> Entry | None:
    """One LIST line, as aioftp reads it; None when it cannot."""
    try:
        path, facts = client.parse_list_line(line.rstrip("\r\n").encode())
    except (ValueError, KeyError, IndexError):
        return None
    name = path.name
    kind = str(facts.get("type", "file"))
    if not name or name in (".", "..") or kind in ("cdir", "pdir"):
        return None
    modify = facts.get("modify")
    return Entry(name, _ftp_time(str(modify)) if modify else None,
                 int_or_none(str(facts.get("size", ""))), is_file=kind != "dir")
