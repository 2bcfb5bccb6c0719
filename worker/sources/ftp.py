"""FTP and FTPS downloads with aioftp: credentials from the URL, passive mode, a byte cap.

`ftp://user:password@host:port/path/file.csv` and `ftps://...` (explicit TLS: AUTH TLS on
the control connection, then PBSZ 0 / PROT P so the data connections are encrypted too).
Implicit FTPS (TLS from the first byte, port 990) is not supported.

Paths follow RFC 1738 (and curl): `ftp://host/dir/file.csv` is `dir/file.csv` relative to
the login directory; `ftp://host/%2Fdir/file.csv` is the absolute `/dir/file.csv`.

Guard rails:
- With `addresses` (what sources/guard.py resolved the host to and checked), the control
  connection goes to those addresses, in order, and the host name is not looked up again
  (no DNS rebinding between the check and the connection); TLS still checks the name.
- A PASV reply names an address to connect to; it is never followed. Data connections go
  to the address the control connection is connected to, with the port of the EPSV/PASV
  reply (a server cannot make the worker connect elsewhere: FTP bounce / SSRF).
- Certificates are verified (against the URL's host name) by default for ftps.
- Passwords never appear in errors: the URL is masked and library text is scrubbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

import aioftp
from aioftp.common import SSLSessionBoundContext
from yarl import URL

from worker.errors import FeedError, SourceError, TransientSourceError, TruncatedError
from worker.settings import Settings
from worker.sources.transfer import Transfer
from worker.urls import mask, scrub

CHUNK_BYTES = 1 << 20          # one read asks for up to this much
MIN_CHUNK_BYTES = 256 << 10    # reads are gathered into chunks at least this large
DEFAULT_PORT = 21
_CLOSE_WAIT_S = 2.0
_ANONYMOUS = ("anonymous", "anonymous@")


@dataclass(frozen=True)
class _Target:
    url: str
    shown: str
    host: str
    port: int
    user: str
    password: str
    path: str
    tls: bool


class _BadReply(Exception):
    """The server's reply could not be understood."""


def _parse(url: str) -> _Target:
    shown = mask(url)
    try:
        u = URL(url)
    except (ValueError, TypeError):
        raise FeedError(f"feed URL {shown} cannot be parsed") from None
    scheme = u.scheme.lower()
    if scheme not in ("ftp", "ftps"):
        raise FeedError(f"feed URL {shown} is not an ftp:// or ftps:// URL")
    if not u.host:
        raise FeedError(f"feed URL {shown} has no host")
    try:
        port = u.explicit_port or DEFAULT_PORT
    except ValueError:
        raise FeedError(f"feed URL {shown} has an invalid port") from None
    segments = [unquote(s) for s in u.raw_path.split("/")[1:]]
    if not segments or not segments[-1]:
        raise FeedError(f"feed URL {shown} names no file")
    path = "/".join(segments)
    if any(c in path for c in "\r\n\0"):
        raise FeedError(f"feed URL {shown} has control characters in its path")
    user, password = _ANONYMOUS
    if u.user:
        user, password = u.user, u.password or ""
    if any(c in user + password for c in "\r\n\0"):
        raise FeedError(f"feed URL {shown} has control characters in its credentials")
    return _Target(url=url, shown=shown, host=u.host, port=port, user=user,
                   password=password, path=path, tls=scheme == "ftps")


def _client(settings: Settings) -> aioftp.Client:
    return aioftp.Client(
        socket_timeout=settings.fetch_read_timeout_s,
        connection_timeout=settings.fetch_connect_timeout_s,
        # Only EPSV/PASV replies are read from the server; the address in a PASV reply is
        # ignored anyway (see _open_data), this is aioftp's own guard too.
        trust_server_pasv_ipv4_address=False,
    )


async def _connect(client: aioftp.Client, t: _Target, addresses: Sequence[str] | None) -> None:
    """The control connection: to the checked addresses in turn (one that refuses or cannot
    be reached gives way to the next; a timeout has spent the budget), else to the name."""
    *others, last = list(addresses) if addresses else [t.host]
    for host in others:
        try:
            await client.connect(host, t.port)
            return
        except TimeoutError:
            raise
        except OSError:
            if _control_writer(client) is not None:  # connected, then failed: not the address
                raise
    await client.connect(last, t.port)


async def _login(client: aioftp.Client, t: _Target, settings: Settings,
                 ssl_context: ssl.SSLContext | None, stage: list[str],
                 addresses: Sequence[str] | None = None) -> None:
    stage[0] = "connect"
    await _connect(client, t, addresses)
    if t.tls:
        stage[0] = "AUTH TLS"
        await client.command("AUTH TLS", "234")
        stage[0] = "TLS handshake"
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        await client.stream.writer.start_tls(
            context, server_hostname=t.host,
            ssl_handshake_timeout=settings.fetch_connect_timeout_s,
        )
        stage[0] = "PBSZ/PROT"
        await client.command("PBSZ 0", "200")
        await client.command("PROT P", "200")
    stage[0] = "login"
    await client.login(t.user, t.password)


def _peer_host(client: aioftp.Client) -> str:
    peer = client.stream.writer.get_extra_info("peername")
    if not peer:
        raise ConnectionResetError("the control connection has no peer")
    return str(peer[0])


async def _passive_port(client: aioftp.Client) -> int:
    """EPSV (port only), else PASV whose address is deliberately not used."""
    try:
        _, info = await client.command("EPSV", "229")
        try:
            return client.parse_epsv_response(info[-1])[1]
        except (ValueError, IndexError):
            raise _BadReply(f"EPSV reply {info[-1]!r} has no port") from None
    except aioftp.StatusCodeError as exc:
        if not exc.received_codes[-1].matches("50x"):
            raise
    _, info = await client.command("PASV", "227")
    try:
        _offered_host, port = client.parse_pasv_response(info[-1])
    except (ValueError, IndexError):
        raise _BadReply(f"PASV reply {info[-1]!r} has no address") from None
    if not 0 < port < 65536:
        raise _BadReply(f"PASV reply {info[-1]!r} has an invalid port")
    return port


async def _retrieve(client: aioftp.Client, t: _Target, settings: Settings,
                    stage: list[str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the data connection (to the control peer) and start RETR on it."""
    stage[0] = "passive mode"
    port = await _passive_port(client)
    host = _peer_host(client)
    stage[0] = f"data connection to {host}:{port}"
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port), settings.fetch_connect_timeout_s
    )
    try:
        stage[0] = "RETR"
        await client.command("RETR " + t.path, "1xx")
        control_tls = client.stream.writer.get_extra_info("ssl_object")
        if control_tls is not None:
            # PROT P: TLS on the data connection too, after the 1xx (some servers accept
            # the data connection only then), resuming the control connection's session
            # (servers such as vsftpd require that) and checking the same host name.
            stage[0] = "data TLS handshake"
            context = SSLSessionBoundContext(
                ssl.PROTOCOL_TLS_CLIENT, context=control_tls.context,
                session=control_tls.session,
            )
            await writer.start_tls(context, server_hostname=t.host,
                                   ssl_handshake_timeout=settings.fetch_connect_timeout_s)
    except BaseException:
        await _close_writer(writer)
        raise
    return reader, writer


def _control_writer(client: aioftp.Client) -> asyncio.StreamWriter | None:
    try:
        return client.stream.writer
    except ConnectionError:  # never connected
        return None


async def _close_writer(*writers: asyncio.StreamWriter | None) -> None:
    """Close the connections (all at once, so a cancellation cannot skip one), then give
    them a moment to finish closing."""
    open_ = [w for w in writers if w is not None]
    for writer in open_:
        writer.close()
    for writer in open_:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_WAIT_S)


async def _close_client(client: aioftp.Client) -> None:
    await _close_writer(_control_writer(client))


async def _quit(client: aioftp.Client) -> None:
    with contextlib.suppress(Exception):
        await client.quit()
    await _close_client(client)


async def _size_of(client: aioftp.Client, path: str) -> int | None:
    await client.command("TYPE I", "200")
    try:
        _, info = await client.command("SIZE " + path, "213")
    except aioftp.StatusCodeError as exc:
        if exc.received_codes[-1].matches("4xx"):
            raise
        return None
    return _int_or_none(info[-1])


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _reply_text(exc: aioftp.StatusCodeError) -> str:
    info = exc.info if isinstance(exc.info, list) else [exc.info]
    return " ".join(str(line).strip(" -") for line in info if str(line).strip(" -"))


def _convert(exc: BaseException, t: _Target, stage: str,
             settings: Settings) -> FeedError | None:
    """A library/OS error as the worker's error, or None for errors not handled here."""
    shown, where = t.shown, f"{t.host}:{t.port}"
    if isinstance(exc, aioftp.StatusCodeError):
        code = str(exc.received_codes[-1]) if exc.received_codes else "???"
        reply = scrub(f"{code} {_reply_text(exc)}".strip(), t.url)
        if stage == "AUTH TLS" and code.startswith("5"):
            return SourceError(
                f"{shown}: the FTP server at {where} does not support explicit TLS "
                f"(AUTH TLS answered {reply})"
            )
        if code.startswith("4"):
            return TransientSourceError(f"{shown}: {stage} failed, FTP {reply}")
        if code == "530" or stage == "login":
            return SourceError(f"{shown}: login as {t.user!r} refused, FTP {reply}")
        if code == "550":
            return SourceError(f"{shown}: no such file or no permission to read it, FTP {reply}")
        return SourceError(f"{shown}: {stage} failed, FTP {reply}")
    if isinstance(exc, _BadReply):
        return SourceError(f"{shown}: unexpected FTP reply: {scrub(str(exc), t.url)}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SourceError(
            f"{shown}: TLS certificate of {where} not trusted "
            f"({scrub(str(exc.verify_message or exc.reason or exc), t.url)})"
        )
    if isinstance(exc, ssl.SSLError):
        return TransientSourceError(
            f"{shown}: TLS failed during {stage} ({scrub(str(exc.reason or exc), t.url)})"
        )
    if isinstance(exc, TimeoutError):
        return TransientSourceError(
            f"timed out during {stage} for {shown} (connect "
            f"{settings.fetch_connect_timeout_s:g} s, read {settings.fetch_read_timeout_s:g} s)"
        )
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return TransientSourceError(
            f"{shown}: the FTP server dropped the connection during {stage}"
        )
    if isinstance(exc, OSError):
        if stage == "connect" or stage.startswith("data connection"):
            what = where if stage == "connect" else stage.removeprefix("data connection to ")
            return TransientSourceError(
                f"cannot connect to {what} for {shown}: {scrub(str(exc.strerror or exc), t.url)}"
            )
        return TransientSourceError(
            f"{shown}: network error during {stage}: {scrub(str(exc.strerror or exc), t.url)}"
        )
    return None


def _check_cap(size: int, t: _Target, cap: int) -> None:
    if size > cap:
        raise SourceError(
            f"{t.shown} is {size} bytes, over the {cap}-byte cap (FEED_WORKER_MAX_FILE_BYTES)"
        )


async def ftp_stream(url: str, settings: Settings, *,
                     ssl_context: ssl.SSLContext | None = None,
                     addresses: Sequence[str] | None = None,
                     transfer: Transfer | None = None) -> AsyncIterator[bytes]:
    """The file at an ftp:// or ftps:// URL, in chunks of 256 KiB to about 1 MiB.

    `ssl_context` (ftps only) replaces `ssl.create_default_context()`, for tests with a
    self-signed certificate. `addresses`: connect to these (checked) addresses of the
    URL's host instead of looking its name up. `transfer.vouched`: the server reported
    the file's SIZE, and fewer bytes than that raise TruncatedError (a 226 alone does not
    vouch: a server may send it for a data connection that a middlebox cut).
    """
    t = _parse(url)
    cap = settings.max_file_bytes
    client = _client(settings)
    stage = ["connect"]
    data: asyncio.StreamWriter | None = None
    try:
        try:
            await _login(client, t, settings, ssl_context, stage, addresses)
            stage[0] = "SIZE"
            size = await _size_of(client, t.path)
            if size is not None:
                _check_cap(size, t, cap)
            if transfer is not None:
                transfer.vouched = size is not None
            reader, data = await _retrieve(client, t, settings, stage)
            stage[0] = "transfer"
            received = 0
            pending = bytearray()
            while True:
                block = await asyncio.wait_for(reader.read(CHUNK_BYTES),
                                               settings.fetch_read_timeout_s)
                if not block:
                    break
                received += len(block)
                if received > cap:
                    raise SourceError(
                        f"{t.shown} passed the {cap}-byte cap (FEED_WORKER_MAX_FILE_BYTES)"
                    )
                pending += block
                if len(pending) >= MIN_CHUNK_BYTES:
                    chunk = bytes(pending)
                    pending.clear()
                    yield chunk
            await _close_writer(data)
            data = None
            # The 226 tells a complete file from a dropped data connection.
            await client.command(None, "2xx", "1xx")
            if size is not None and received < size:
                raise TruncatedError(received, f"the server's SIZE is {size:,} bytes")
            if size is not None and received > size:
                raise TransientSourceError(
                    f"{t.shown}: the file changed during the transfer: {received} bytes "
                    f"received, SIZE said {size}"
                )
        except (aioftp.StatusCodeError, _BadReply, OSError, EOFError) as exc:
            converted = _convert(exc, t, stage[0], settings)
            if converted is None:
                raise
            raise converted from None
        if pending:
            yield bytes(pending)
        await _quit(client)
    finally:
        await _close_writer(data, _control_writer(client))


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


async def ftp_stat(url: str, settings: Settings, *,
                   ssl_context: ssl.SSLContext | None = None,
                   addresses: Sequence[str] | None = None) -> tuple[int | None, str | None]:
    """(size in bytes, modification time as ISO 8601 UTC like 2024-05-01T12:00:00Z).

    MLST when the server has it, else SIZE and MDTM; either part is None when the server
    does not say. A missing file is a SourceError.
    """
    t = _parse(url)
    client = _client(settings)
    stage = ["connect"]
    try:
        await _login(client, t, settings, ssl_context, stage, addresses)
        stage[0] = "MLST"
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
                size = _int_or_none(facts.get("size", ""))
                mtime = _ftp_time(facts["modify"]) if "modify" in facts else None
                await _quit(client)
                return size, mtime
        stage[0] = "SIZE"
        size = await _size_of(client, t.path)
        stage[0] = "MDTM"
        modified: str | None = None
        try:
            _, info = await client.command("MDTM " + t.path, "213")
            modified = _ftp_time(info[-1])
        except aioftp.StatusCodeError as exc:
            if exc.received_codes[-1] == "550" and size is None:
                raise
            if exc.received_codes[-1].matches("4xx"):
                raise
        await _quit(client)
        return size, modified
    except (aioftp.StatusCodeError, _BadReply, OSError, EOFError) as exc:
        converted = _convert(exc, t, stage[0], settings)
        if converted is None:
            raise
        raise converted from None
    finally:
        await _close_client(client)
