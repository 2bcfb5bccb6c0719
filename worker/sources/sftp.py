"""SFTP downloads with asyncssh: a private key and/or the URL's password, host-key
checking, a byte cap.

`sftp://user:password@host:port/path/file.csv`: the path is absolute on the server;
`sftp://host/~/file.csv` is relative to the login directory (as in curl).

Authentication: the private key the feed names (mapping.sftpKey; sources/sshkeys.py
loads it from what the worker was given), then the URL's password (and
keyboard-interactive with it); both for a server that asks for both (OpenSSH's
`AuthenticationMethods publickey,password`). Nothing else: no keys from ~/.ssh, no
ssh-agent, no GSSAPI, no ~/.ssh/config, so what a feed does depends on its settings alone
and not on the account the worker runs as.

Host keys: a feed that pins its server's key (mapping.sftpHostKey: SHA256 fingerprints)
trusts those alone; otherwise `known_hosts` is passed to asyncssh as is. Its default,
`()`, is asyncssh's: the worker user's ~/.ssh/known_hosts, and a host not in it is
refused. Production points it at a known_hosts file it manages (a setting); `None`
accepts any host key and is for tests only (it gives no protection against a man in the
middle). A refused key fails the run naming the fingerprint the server presented.

With `addresses` (what sources/guard.py resolved the host to and checked), the connection
goes to those addresses, in order, and the host name is not looked up again (no DNS
rebinding between the check and the connection); the host key is still looked up in
known_hosts by the URL's host name (and the address).
"""

from __future__ import annotations

import asyncio
import contextlib
import stat as stat_module
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar, cast

import asyncssh
from asyncssh.known_hosts import KnownHostsArg

from worker.errors import FeedError, SourceError, TransientSourceError, TruncatedError
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sources.download import Download
from worker.sources.names import Entry
from worker.sources.sshkeys import HostKeyCheck, client_key
from worker.urls import FeedUrl

CHUNK_BYTES = 1 << 20
DEFAULT_PORT = 22
_CLOSE_WAIT_S = 2.0

_PERMANENT_DISCONNECTS = (
    asyncssh.PermissionDenied,
    asyncssh.HostKeyNotVerifiable,
    asyncssh.IllegalUserName,
    asyncssh.KeyExchangeFailed,
    asyncssh.ProtocolNotSupported,
    asyncssh.ServiceNotAvailable,
)


@dataclass(frozen=True)
class _Target:
    url: FeedUrl
    shown: str
    host: str
    port: int
    user: str
    password: str | None
    path: str
    key: str | None = None         # the name of the private key offered (mapping.sftpKey)
    pins: tuple[str, ...] = ()     # pinned host key fingerprints (mapping.sftpHostKey)


def _target(u: FeedUrl, options: SourceOptions | None = None) -> _Target:
    shown = u.shown
    host, port = u.server(("sftp",), DEFAULT_PORT)
    if not u.user:
        raise FeedError(f"feed URL {shown} has no user name (sftp://user:password@host/path)")
    path = u.path
    if path.startswith("/~/"):
        path = path[3:]
    if not path or path.endswith("/") or path == "/~":
        raise FeedError(f"feed URL {shown} names no file")
    if "\0" in path:
        raise FeedError(f"feed URL {shown} has a NUL character in its path")
    options = options or SourceOptions()
    return _Target(url=u, shown=shown, host=host, port=port, user=u.user,
                   password=u.password, path=path, key=options.sftp_key,
                   pins=options.host_keys)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _connect(t: _Target, settings: Settings, known_hosts: KnownHostsArg,
                   addresses: Sequence[str] | None) -> asyncssh.SSHClientConnection:
    """To the checked addresses in turn (one that refuses or cannot be reached gives way to
    the next; a timeout has spent the budget), else to the host name."""
    keys = [client_key(t.key, settings)] if t.key else None
    *others, last = list(addresses) if addresses else [t.host]
    for host in others:
        try:
            return await _connect_to(host, t, settings, known_hosts, keys)
        except TimeoutError:
            raise
        except OSError:
            continue
    return await _connect_to(last, t, settings, known_hosts, keys)


async def _connect_to(host: str, t: _Target, settings: Settings, known_hosts: KnownHostsArg,
                      keys: list[asyncssh.SSHKey] | None) -> asyncssh.SSHClientConnection:
    check = HostKeyCheck(t.pins)
    try:
        return await asyncssh.connect(
            host, t.port,
            client_factory=lambda: check,
            host_key_alias=t.host if host != t.host else None,
            username=t.user,
            password=t.password,
            # Pinned fingerprints replace known_hosts: an empty one leaves every key to
            # HostKeyCheck.
            known_hosts=asyncssh.import_known_hosts("") if t.pins else known_hosts,
            client_keys=keys,
            agent_path=None,
            gss_host=None,
            config=None,
            preferred_auth=("publickey", "password", "keyboard-interactive") if keys
            else ("password", "keyboard-interactive"),
            connect_timeout=settings.fetch_connect_timeout_s,
            login_timeout=settings.fetch_connect_timeout_s,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise _untrusted(t, check.presented, known_hosts) from None


def _untrusted(t: _Target, presented: str | None, known_hosts: KnownHostsArg) -> SourceError:
    where = f"{t.host}:{t.port}"
    key = f"the host key of {where} ({presented or 'not shown'})"
    if t.pins:
        return SourceError(f"{t.shown}: {key} is not the one the feed pins "
                           f"(mapping.sftpHostKey: {', '.join(t.pins)})")
    listed = f"known_hosts {known_hosts}" if isinstance(known_hosts, str) else "known_hosts"
    return SourceError(f"{t.shown}: {key} is not trusted: {listed} does not have it and the "
                       "feed pins none (mapping.sftpHostKey)")


async def _close(conn: asyncssh.SSHClientConnection | None) -> None:
    if conn is None:
        return
    conn.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.wait_closed(), _CLOSE_WAIT_S)


def _convert(exc: BaseException, t: _Target, stage: str,
             settings: Settings) -> FeedError | None:
    shown, where = t.shown, f"{t.host}:{t.port}"

    def text(e: BaseException) -> str:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        return t.url.scrub(str(reason))

    if isinstance(exc, asyncssh.PermissionDenied):
        offered = " and ".join(([f"the key {t.key!r}"] if t.key else [])
                               + (["the password"] if t.password else [])) or "no credentials"
        return SourceError(f"{shown}: login as {t.user!r} with {offered} refused by {where} "
                           f"({text(exc)})")
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return SourceError(
            f"{shown}: the host key of {where} is not trusted (known_hosts): {text(exc)}"
        )
    if isinstance(exc, _PERMANENT_DISCONNECTS):
        return SourceError(f"{shown}: SSH {stage} with {where} failed: {text(exc)}")
    if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return SourceError(f"{shown}: no such file ({text(exc)})")
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return SourceError(f"{shown}: permission denied ({text(exc)})")
    if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
        return TransientSourceError(f"{shown}: the SFTP connection was lost during {stage}")
    if isinstance(exc, asyncssh.SFTPError):
        return SourceError(f"{shown}: SFTP {stage} failed: {text(exc)}")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return SourceError(f"{shown}: {where} refused the SFTP channel: {text(exc)}")
    if isinstance(exc, asyncssh.DisconnectError):
        return TransientSourceError(f"{shown}: {where} closed the connection during {stage}"
                                    f" ({text(exc)})")
    if isinstance(exc, TimeoutError):
        return TransientSourceError(
            f"timed out during {stage} for {shown} (connect "
            f"{settings.fetch_connect_timeout_s:g} s, read {settings.fetch_read_timeout_s:g} s)"
        )
    if isinstance(exc, OSError):
        if stage == "connect":
            return TransientSourceError(f"cannot connect to {where} for {shown}: {text(exc)}")
        return TransientSourceError(f"{shown}: network error during {stage}: {text(exc)}")
    return None


_HANDLED = (asyncssh.Error, OSError)
_T = TypeVar("_T")


async def sftp_stream(url: FeedUrl, settings: Settings, *, known_hosts: KnownHostsArg = (),
                      options: SourceOptions | None = None,
                      addresses: Sequence[str] | None = None,
                      download: Download | None = None) -> AsyncIterator[bytes]:
    """The file at an sftp:// URL, in chunks of 1 MiB (the last one shorter).

    `known_hosts`: see the module doc; the default checks ~/.ssh/known_hosts, production
    should pass its own known_hosts file, tests pass None. `options`: the feed's key and
    pinned host keys (mapping.sftpKey, mapping.sftpHostKey). `addresses`: connect to these
    (checked) addresses of the URL's host instead of looking its name up.
    `download.transfer.vouched`: the open file's stat gave its size, and fewer bytes than
    that raise TruncatedError (the file shrank, or was being rewritten, as it was read).
    A file over the cap fails before it is read.
    """
    download = download if download is not None else Download(url, settings.max_file_bytes)
    t = _target(url, options)
    read_s = settings.fetch_read_timeout_s
    stage = "connect"
    conn: asyncssh.SSHClientConnection | None = None
    try:
        try:
            conn = await _connect(t, settings, known_hosts, addresses)
            stage = "SFTP start"
            sftp = await asyncio.wait_for(conn.start_sftp_client(), read_s)
            stage = "open"
            # No `async with` for the file: closing it waits for the server, which must not
            # outlast the timeouts when the server stalls; closing the connection is enough.
            f = await asyncio.wait_for(sftp.open(t.path, "rb"), read_s)
            stage = "stat"
            attrs = await asyncio.wait_for(f.stat(), read_s)
            if attrs.permissions is not None and stat_module.S_ISDIR(attrs.permissions):
                raise SourceError(f"{t.shown} is a directory, not a file")
            download.announce(attrs.size, vouched=attrs.size is not None)
            stage = "transfer"
            received = 0
            while True:
                chunk = cast(bytes, await asyncio.wait_for(f.read(CHUNK_BYTES), read_s))
                if not chunk:
                    break
                received += len(chunk)
                yield chunk
            with contextlib.suppress(Exception):
                await asyncio.wait_for(f.close(), read_s)
            _check_size(t, received, attrs.size)
        except _HANDLED as exc:
            converted = _convert(exc, t, stage, settings)
            if converted is None:
                raise
            raise converted from None
    finally:
        await _close(conn)


def _check_size(t: _Target, received: int, size: int | None) -> None:
    if size is not None and received < size:
        raise TruncatedError(received, f"the file's size on the server is {size:,} bytes")
    if size is not None and received > size:
        raise TransientSourceError(f"{t.shown}: the file changed while it was read: "
                                   f"{received} bytes read, {size} when it was opened")


async def sftp_stat(url: FeedUrl, settings: Settings, *, known_hosts: KnownHostsArg = (),
                    options: SourceOptions | None = None,
                    addresses: Sequence[str] | None = None) -> tuple[int | None, str | None]:
    """(size in bytes, modification time as ISO 8601 UTC like 2024-05-01T12:00:00Z)."""
    t = _target(url, options)

    async def stat(sftp: asyncssh.SFTPClient) -> tuple[int | None, str | None]:
        attrs = await sftp.stat(t.path)
        if attrs.permissions is not None and stat_module.S_ISDIR(attrs.permissions):
            raise SourceError(f"{t.shown} is a directory, not a file")
        return attrs.size, _iso(attrs.mtime)

    return await _one_request(t, settings, known_hosts, addresses, "stat", stat)


async def sftp_list(url: FeedUrl, settings: Settings, *, known_hosts: KnownHostsArg = (),
                    options: SourceOptions | None = None,
                    addresses: Sequence[str] | None = None) -> list[Entry]:
    """The entries of the directory of the URL's file (its name is not looked at), for a
    file name that is a pattern (sources/names.py); `options` as for sftp_stream."""
    t = _target(url, options)
    head, sep, _ = t.path.rpartition("/")
    directory = head or sep or "."

    async def listing(sftp: asyncssh.SFTPClient) -> list[Entry]:
        found = await sftp.readdir(directory)
        return [Entry(name, _iso(n.attrs.mtime), n.attrs.size,
                      is_file=not (n.attrs.permissions is not None
                                   and stat_module.S_ISDIR(n.attrs.permissions)))
                for n in found
                if (name := str(n.filename)) not in (".", "..")]

    return await _one_request(t, settings, known_hosts, addresses, "directory listing",
                              listing)


async def _one_request(t: _Target, settings: Settings, known_hosts: KnownHostsArg,
                       addresses: Sequence[str] | None, stage_name: str,
                       request: Callable[[asyncssh.SFTPClient], Awaitable[_T]]) -> _T:
    """One SFTP request (`stage_name`, as errors name it) on a connection of its own."""
    read_s = settings.fetch_read_timeout_s
    stage = "connect"
    conn: asyncssh.SSHClientConnection | None = None
    try:
        conn = await _connect(t, settings, known_hosts, addresses)
        stage = "SFTP start"
        sftp = await asyncio.wait_for(conn.start_sftp_client(), read_s)
        stage = stage_name
        return await asyncio.wait_for(request(sftp), read_s)
    except _HANDLED as exc:
        converted = _convert(exc, t, stage, settings)
        if converted is None:
            raise
        raise converted from None
    finally:
        await _close(conn)
