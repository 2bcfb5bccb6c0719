"""An FTP(S) session for sources/ftp.py: the target named by the URL and the feed's source
options, the control connection (to the checked addresses), TLS (explicit or implicit) and
login, the passive data connection (always to the control peer), closing, and library
errors converted into the worker's, naming the step the session was at.

TLS is aioftp's: implicit TLS is its `ssl` client (TLS from the first byte), explicit TLS
its `upgrade_to_tls` (AUTH TLS, the handshake, PBSZ 0 / PROT P), and a data connection
resumes the control connection's session through its SSLSessionBoundContext. The data
connection itself stays ours: aioftp's would do its TLS handshake before RETR is sent,
where servers such as vsftpd accept a data connection, and begin its TLS, only after the
transfer command (a deadlock until the timeout); and, after AUTH TLS, it would check the
certificate against the address connected to rather than the URL's host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import aioftp
from aioftp.common import SSLSessionBoundContext

from worker.errors import FeedError, SourceError, TransientSourceError
from worker.model import SourceOptions
from worker.settings import Settings
from worker.sources.tls import client_context
from worker.urls import FeedUrl

DEFAULT_PORT = 21
IMPLICIT_PORT = 990
_CLOSE_WAIT_S = 2.0
_ANONYMOUS = ("anonymous", "anonymous@")


@dataclass(frozen=True)
class Target:
    url: FeedUrl
    shown: str
    host: str
    port: int
    user: str
    password: str
    path: str
    tls: bool
    implicit: bool = False  # TLS from the first byte (implicit FTPS), not AUTH TLS
    ca_bundle: str | None = None  # PEM certificates trusted instead of the system's
    verify: bool = True     # False: no certificate check (mapping.tlsVerify false)


class BadReply(Exception):
    """The server's reply could not be understood."""


# What the session converts into the worker's errors (see Session.convert).
HANDLED = (aioftp.StatusCodeError, BadReply, OSError, EOFError)


def target(u: FeedUrl, options: SourceOptions | None = None) -> Target:
    """What the URL and the feed's source options name. ftps:// is implicit TLS on port
    990 (or with mapping.ftpsMode implicit, where port 990 is then the default) and
    explicit TLS otherwise."""
    options = options or SourceOptions()
    shown = u.shown
    scheme = u.scheme
    tls = scheme == "ftps"
    implicit = tls and (options.ftps_mode == "implicit" or (
        options.ftps_mode == "" and u.explicit_port == IMPLICIT_PORT))
    host, port = u.server(("ftp", "ftps"), IMPLICIT_PORT if implicit else DEFAULT_PORT)
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
    return Target(url=u, shown=shown, host=host, port=port, user=user, password=password,
                  path=path, tls=tls, implicit=implicit, ca_bundle=options.ca_bundle,
                  verify=options.tls_verify)


def tls_context(t: Target, given: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """The context that checks the server's certificate: `given` (tests), else the feed's
    (sources/tls.py)."""
    if given is not None:
        return given
    return client_context(t.ca_bundle, t.verify, shown=t.shown, server=f"{t.host}:{t.port}")


class Session:
    """One control connection to the target's server, and the step it is at (`stage`),
    which errors name."""

    def __init__(self, t: Target, settings: Settings, ssl_context: ssl.SSLContext | None,
                 addresses: Sequence[str] | None) -> None:
        self.t = t
        self.settings = settings
        self.addresses = addresses
        self.stage = "connect"
        context = tls_context(t, ssl_context) if t.tls else None
        self.context = context
        implicit: dict[str, object] = {}
        if t.implicit:
            # aioftp hands these to asyncio.open_connection: the handshake checks the URL's
            # host name (the connection goes to a checked address) within the connect time.
            implicit = {"ssl": context, "server_hostname": t.host,
                        "ssl_handshake_timeout": settings.fetch_connect_timeout_s}
        self.client = aioftp.Client(
            socket_timeout=settings.fetch_read_timeout_s,
            connection_timeout=settings.fetch_connect_timeout_s,
            **implicit,  # type: ignore[arg-type]
        )

    async def _connect(self) -> None:
        """To the checked addresses in turn (one that refuses or cannot be reached gives
        way to the next; a timeout has spent the budget), else to the name."""
        client, t = self.client, self.t
        *others, last = list(self.addresses) if self.addresses else [t.host]
        for host in others:
            try:
                await client.connect(host, t.port)
                return
            except TimeoutError:
                raise
            except OSError:
                if self.control_writer() is not None:  # connected, then failed: not the address
                    raise
        await client.connect(last, t.port)

    async def login(self) -> None:
        client, t = self.client, self.t
        self.stage = "connect" if not t.implicit else "connect (implicit TLS)"
        await self._connect()
        if t.implicit:
            self.stage = "PBSZ/PROT"
            await client.command("PBSZ 0", "200")
            await client.command("PROT P", "200")
        elif t.tls:
            self.stage = "AUTH TLS"
            # upgrade_to_tls checks the certificate against client.server_host: the URL's
            # host name, not the checked address connected to (nothing else of aioftp's that
            # reads server_host is used: data connections go to the control peer).
            client.server_host = t.host
            await client.upgrade_to_tls(self.context)
        self.stage = "login"
        await client.login(t.user, t.password)

    def _peer_host(self) -> str:
        peer = self.client.stream.writer.get_extra_info("peername")
        if not peer:
            raise ConnectionResetError("the control connection has no peer")
        return str(peer[0])

    async def _passive_port(self) -> int:
        """EPSV (port only), else PASV whose address is deliberately not used."""
        client = self.client
        try:
            _, info = await client.command("EPSV", "229")
            try:
                return client.parse_epsv_response(info[-1])[1]
            except (ValueError, IndexError):
                raise BadReply(f"EPSV reply {info[-1]!r} has no port") from None
        except aioftp.StatusCodeError as exc:
            if not exc.received_codes[-1].matches("50x"):
                raise
        _, info = await client.command("PASV", "227")
        try:
            _offered_host, port = client.parse_pasv_response(info[-1])
        except (ValueError, IndexError):
            raise BadReply(f"PASV reply {info[-1]!r} has no address") from None
        if not 0 < port < 65536:
            raise BadReply(f"PASV reply {info[-1]!r} has an invalid port")
        return port

    async def retrieve(self, command: str | None = None
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the data connection (to the control peer) and start RETR on it (or
        `command`, a listing: MLSD, NLST)."""
        client, t, settings = self.client, self.t, self.settings
        self.stage = "passive mode"
        port = await self._passive_port()
        host = self._peer_host()
        self.stage = f"data connection to {host}:{port}"
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), settings.fetch_connect_timeout_s
        )
        try:
            self.stage = command.split(" ", 1)[0] if command else "RETR"
            await client.command(command or "RETR " + t.path, "1xx")
            control_tls = client.stream.writer.get_extra_info("ssl_object")
            if control_tls is not None:
                # PROT P: TLS on the data connection too, after the 1xx (some servers accept
                # the data connection only then), resuming the control connection's session
                # (servers such as vsftpd require that) and checking the same host name.
                self.stage = "data TLS handshake"
                context = SSLSessionBoundContext(
                    ssl.PROTOCOL_TLS_CLIENT, context=control_tls.context,
                    session=control_tls.session,
                )
                await writer.start_tls(context, server_hostname=t.host,
                                       ssl_handshake_timeout=settings.fetch_connect_timeout_s)
        except BaseException:
            await close_writers(writer)
            raise
        return reader, writer

    async def size_of(self) -> int | None:
        client = self.client
        await client.command("TYPE I", "200")
        try:
            _, info = await client.command("SIZE " + self.t.path, "213")
        except aioftp.StatusCodeError as exc:
            if exc.received_codes[-1].matches("4xx"):
                raise
            return None
        return int_or_none(info[-1])

    def control_writer(self) -> asyncio.StreamWriter | None:
        try:
            return self.client.stream.writer
        except ConnectionError:  # never connected
            return None

    async def close(self) -> None:
        await close_writers(self.control_writer())

    async def quit(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.quit()
        await self.close()

    def convert(self, exc: BaseException) -> FeedError | None:
        """A library/OS error as the worker's error, or None for errors not handled here."""
        t, stage, settings = self.t, self.stage, self.settings
        shown, where = t.shown, f"{t.host}:{t.port}"
        if isinstance(exc, aioftp.StatusCodeError):
            code = str(exc.received_codes[-1]) if exc.received_codes else "???"
            reply = t.url.scrub(f"{code} {_reply_text(exc)}".strip())
            if stage == "AUTH TLS" and code.startswith("5"):
                if "234" in [str(c) for c in exc.expected_codes]:
                    return SourceError(
                        f"{shown}: the FTP server at {where} does not support explicit TLS "
                        f"(AUTH TLS answered {reply})"
                    )
                return SourceError(f"{shown}: the FTP server at {where} refused to protect "
                                   f"data connections (PBSZ/PROT answered {reply})")
            if code.startswith("4"):
                return TransientSourceError(f"{shown}: {stage} failed, FTP {reply}")
            if code == "530" or stage == "login":
                return SourceError(f"{shown}: login as {t.user!r} refused, FTP {reply}")
            if code == "550":
                return SourceError(
                    f"{shown}: no such file or no permission to read it, FTP {reply}")
            return SourceError(f"{shown}: {stage} failed, FTP {reply}")
        if isinstance(exc, BadReply):
            return SourceError(f"{shown}: unexpected FTP reply: {t.url.scrub(str(exc))}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SourceError(
                f"{shown}: TLS certificate of {where} not trusted "
                f"({t.url.scrub(str(exc.verify_message or exc.reason or exc))})"
            )
        if isinstance(exc, ssl.SSLError) and t.implicit and stage.startswith("connect"):
            return SourceError(
                f"{shown}: no implicit TLS at {where} ({t.url.scrub(str(exc.reason or exc))});"
                " a server that expects AUTH TLS needs mapping.ftpsMode explicit"
            )
        if isinstance(exc, ssl.SSLError):
            return TransientSourceError(
                f"{shown}: TLS failed during {stage} ({t.url.scrub(str(exc.reason or exc))})"
            )
        if isinstance(exc, TimeoutError):
            return TransientSourceError(
                f"timed out during {stage} for {shown} (connect "
                f"{settings.fetch_connect_timeout_s:g} s, "
                f"read {settings.fetch_read_timeout_s:g} s)"
            )
        if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
            return TransientSourceError(
                f"{shown}: the FTP server dropped the connection during {stage}"
            )
        if isinstance(exc, OSError):
            if stage == "connect" or stage.startswith("data connection"):
                what = where if stage == "connect" else stage.removeprefix("data connection to ")
                return TransientSourceError(
                    f"cannot connect to {what} for {shown}: "
                    f"{t.url.scrub(str(exc.strerror or exc))}"
                )
            return TransientSourceError(
                f"{shown}: network error during {stage}: {t.url.scrub(str(exc.strerror or exc))}"
            )
        return None


async def close_writers(*writers: asyncio.StreamWriter | None) -> None:
    """Close the connections (all at once, so a cancellation cannot skip one), then give
    them a moment to finish closing."""
    open_ = [w for w in writers if w is not None]
    for writer in open_:
        writer.close()
    for writer in open_:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_WAIT_S)


def int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _reply_text(exc: aioftp.StatusCodeError) -> str:
    info = exc.info if isinstance(exc.info, list) else [exc.info]
    return " ".join(str(line).strip(" -") for line in info if str(line).strip(" -"))
