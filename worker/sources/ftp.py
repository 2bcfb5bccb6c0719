"""FTP and FTPS downloads with aioftp: credentials from the URL, passive mode, a byte cap.

`ftp://user:password@host:port/path/file.csv` and `ftps://...`: explicit TLS (AUTH TLS on
the control connection, then PBSZ 0 / PROT P so the data connections are encrypted too),
or implicit TLS (TLS from the first byte) for `ftps://host:990/...` or a feed whose
mapping.ftpsMode is implicit (sources/ftpconn.py).

Paths follow RFC 1738 (and curl): `ftp://host/dir/file.csv` is `dir/file.csv` relative to
the login directory; `ftp://host/%2Fdir/file.csv` is the absolute `/dir/file.csv`.

Guard rails:
- With `addresses` (what sources/guard.py resolved the host to and checked), the control
  connection goes to those addresses, in order, and the host name is not looked up again
  (no DNS rebinding between the check and the connection); TLS still checks the name.
- A PASV reply names an address to connect to; it is never followed. Data connections go
  to the address the control connection is connected to, with the port of the EPSV/PASV
  reply (a server cannot make the worker connect elsewhere: FTP bounce / SSRF).
- Certificates are verified (against the URL's host name) for ftps: against the system's
  CAs, or the feed's own (mapping.caBundle); mapping.tlsVerify false turns the check off,
  and every connection then logs the warning source.tls_unverified.
- Passwords never appear in errors: the URL is masked and library text is scrubbed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import aioftp

from worker.errors import SourceError, TransientSourceError, TruncatedError
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sources.download import Download
from worker.sources.ftpconn import HANDLED, Session, close_writers, int_or_none, target
from worker.urls import FeedUrl

CHUNK_BYTES = 1 << 20          # one read asks for up to this much
MIN_CHUNK_BYTES = 256 << 10    # reads are gathered into chunks at least this large


async def ftp_stream(url: FeedUrl, settings: Settings, *,
                     ssl_context: ssl.SSLContext | None = None,
                     options: SourceOptions | None = None,
                     addresses: Sequence[str] | None = None,
                     download: Download | None = None) -> AsyncIterator[bytes]:
    """The file at an ftp:// or ftps:// URL, in chunks of 256 KiB to about 1 MiB.

    `ssl_context` (ftps only) replaces the context the feed's options make (tests).
    `options`: the feed's TLS mode, CA bundle and opt-out. `addresses`: connect to these
    (checked) addresses of the URL's host instead of looking its name up.
    `download.transfer.vouched`: the server reported the file's SIZE, and fewer bytes than
    that raise TruncatedError (a 226 alone does not vouch: a server may send it for a data
    connection that a middlebox cut). A SIZE over the cap fails before RETR.
    """
    download = download if download is not None else Download(url, settings.max_file_bytes)
    t = target(url, options)
    session = Session(t, settings, ssl_context, addresses)
    data: asyncio.StreamWriter | None = None
    try:
        try:
            await session.login()
            session.stage = "SIZE"
            size = await session.size_of()
            download.announce(size, vouched=size is not None)
            reader, data = await session.retrieve()
            session.stage = "transfer"
            received = 0
            pending = bytearray()
            while True:
                block = await asyncio.wait_for(reader.read(CHUNK_BYTES),
                                               settings.fetch_read_timeout_s)
                if not block:
                    break
                received += len(block)
                pending += block
                if len(pending) >= MIN_CHUNK_BYTES:
                    chunk = bytes(pending)
                    pending.clear()
                    yield chunk
            await close_writers(data)
            data = None
            # The 226 tells a complete file from a dropped data connection.
            await session.client.command(None, "2xx", "1xx")
            if size is not None and received < size:
                raise TruncatedError(received, f"the server's SIZE is {size:,} bytes")
            if size is not None and received > size:
                raise TransientSourceError(
                    f"{t.shown}: the file changed during the transfer: {received} bytes "
                    f"received, SIZE said {size}"
                )
        except HANDLED as exc:
            converted = session.convert(exc)
            if converted is None:
                raise
            raise converted from None
        if pending:
            yield bytes(pending)
        await session.quit()
    finally:
        await close_writers(data, session.control_writer())


def _ftp_time(value: str) -> str | None:
    """An FTP time (YYYYMMDDHHMMSS[.sss], UTC) as ISO 8601 UTC to the second."""
    try:
        stamp = datetime.strptime(value.strip()[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mlst_facts(info: list[str]) -> dict[str, str]:
    for line in info[1:]:
        text = line.strip()
        if "=" not in text:
            continue
        facts_part = text.split(" ", 1)[0]
        facts = {}
        for fact in facts_part.split(";"):
            key, sep, value = fact.partition("=")
            if sep:
                facts[key.strip().lower()] = value.strip()
        return facts
    return {}


async def ftp_stat(url: FeedUrl, settings: Settings, *,
                   ssl_context: ssl.SSLContext | None = None,
                   options: SourceOptions | None = None,
                   addresses: Sequence[str] | None = None) -> tuple[int | None, str | None]:
    """(size in bytes, modification time as ISO 8601 UTC like 2024-05-01T12:00:00Z).

    MLST when the server has it, else SIZE and MDTM; either part is None when the server
    does not say. A missing file is a SourceError.
    """
    t = target(url, options)
    session = Session(t, settings, ssl_context, addresses)
    client = session.client
    try:
        await session.login()
        session.stage = "MLST"
        try:
            _, info = await client.command("MLST " + t.path, "2xx")
        except aioftp.StatusCodeError as exc:
            if exc.received_codes[-1] not in ("500", "501", "502", "504"):
                raise
        else:
            facts = _mlst_facts(info)
            if facts:
                if facts.get("type", "file").lower() in ("dir", "cdir", "pdir"):
                    raise SourceError(f"{t.shown} is a directory, not a file")
                size = int_or_none(facts.get("size", ""))
                mtime = _ftp_time(facts["modify"]) if "modify" in facts else None
                await session.quit()
                return size, mtime
        session.stage = "SIZE"
        size = await session.size_of()
        session.stage = "MDTM"
        modified: str | None = None
        try:
            _, info = await client.command("MDTM " + t.path, "213")
            modified = _ftp_time(info[-1])
        except aioftp.StatusCodeError as exc:
            if exc.received_codes[-1] == "550" and size is None:
                raise
            if exc.received_codes[-1].matches("4xx"):
                raise
        await session.quit()
        return size, modified
    except HANDLED as exc:
        converted = session.convert(exc)
        if converted is None:
            raise
        raise converted from None
    finally:
        await session.close()
