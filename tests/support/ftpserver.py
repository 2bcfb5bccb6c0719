"""A real FTP / FTPS (explicit or implicit TLS) server on loopback, pyftpdlib in a
background thread.

Each server has its own pyftpdlib IOLoop, polled by its own thread until stop(); the thread
closes every socket it opened before stop() returns. A test CA and a server certificate
signed by it are made at run time with `cryptography` (see make_test_certs).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

# pyftpdlib is built on asyncore/asynchat, which Python 3.11 deprecates on import (and the
# suite turns warnings into errors); that warning, at this import only, is not ours to fix.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"The (asyncore|asynchat) module is deprecated",
                            DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
    from pyftpdlib.filesystems import AbstractedFS  # type: ignore[import-untyped]
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler  # type: ignore[import-untyped]
    from pyftpdlib.ioloop import IOLoop  # type: ignore[import-untyped]
    from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

HOST = "127.0.0.1"
# The test user's password: characters that URLs percent-encode, to catch leaks of either form.
PASSWORD = "s3cret:p@ss/w0rd"


@dataclass(frozen=True)
class CertBundle:
    ca_file: Path          # the CA that signed the server certificate (PEM)
    cert_file: Path        # server certificate + private key (PEM), for pyftpdlib
    names: tuple[str, ...]

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_test_certs(directory: Path, names: tuple[str, ...] = ("localhost", HOST)) -> CertBundle:
    """A CA and a server certificate for `names` (DNS names or IP addresses)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "feed-worker test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    )
    return CertBundle(ca_file=ca_file, cert_file=cert_file, names=names)


def make_self_signed_cert(directory: Path,
                          names: tuple[str, ...] = ("localhost", HOST)) -> CertBundle:
    """A server certificate that signs itself (no CA): its own file is the only bundle that
    trusts it."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_file = directory / "self-signed.pem"
    ca_file.write_bytes(pem)
    cert_file = directory / "self-signed-server.pem"
    cert_file.write_bytes(pem + key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return CertBundle(ca_file=ca_file, cert_file=cert_file, names=names)


@dataclass
class Journal:
    """What the server saw, written by the server thread, read by tests."""

    commands: list[str] = field(default_factory=list)    # "USER", "PASV", ...
    replies: list[str] = field(default_factory=list)     # every reply line sent
    data_peers: list[str] = field(default_factory=list)  # client address of each data conn
    disconnects: list[str] = field(default_factory=list)  # a control connection closed
    connects: list[str] = field(default_factory=list)    # a control connection accepted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, value: str) -> None:
        with self.lock:
            getattr(self, kind).append(value)

    def snapshot(self, kind: str) -> list[str]:
        with self.lock:
            return list(getattr(self, kind))


class _BreakingFile:
    """A file whose reads fail after `limit` bytes, or with `stall`, block until it is set
    and then end the file there, or with `end`, end it there at once (the server then
    reports a complete transfer, 226). No fileno(): no sendfile either."""

    def __init__(self, f: Any, limit: int, stall: threading.Event | None,
                 end: bool = False) -> None:
        self._f = f
        self._left = limit
        self._stall = stall
        self._end = end
        self.name = f.name

    @property
    def closed(self) -> bool:
        return bool(self._f.closed)

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            if self._end:
                return b""
            if self._stall is not None:
                self._stall.wait(timeout=30)
                return b""
            raise OSError(5, "Input/output error (test server breaks off the transfer)")
        data: bytes = self._f.read(min(size, self._left) if size > 0 else self._left)
        self._left -= len(data)
        return data

    def seek(self, *args: Any) -> Any:
        return self._f.seek(*args)

    def close(self) -> None:
        self._f.close()


def _breaking_fs(limit: int, stall: threading.Event | None,
                 end: bool = False) -> type[AbstractedFS]:
    def open_(fs: Any, filename: str, mode: str) -> Any:
        return _BreakingFile(AbstractedFS.open(fs, filename, mode), limit, stall, end)

    return type("BreakingFS", (AbstractedFS,), {"open": open_})


def _late_tls_dtp(dtp: type[Any]) -> type[Any]:
    """A TLS data handler that secures its connection when the transfer starts, not when
    the connection is made (pyftpdlib's own does it at once)."""

    def init(handler: Any, sock: Any, cmd_channel: Any) -> None:
        protected, cmd_channel._prot = cmd_channel._prot, False
        try:
            dtp.__init__(handler, sock, cmd_channel)
        finally:
            cmd_channel._prot = protected

    def secure(handler: Any) -> None:
        if handler.cmd_channel._prot and not handler._ssl_requested:
            handler.secure_connection(handler.cmd_channel.ssl_context)

    def push(handler: Any, data: Any) -> None:
        secure(handler)
        dtp.push(handler, data)

    def push_with_producer(handler: Any, producer: Any) -> None:
        secure(handler)
        dtp.push_with_producer(handler, producer)

    return type("LateTLSDTP", (dtp,), {
        "__init__": init, "push": push, "push_with_producer": push_with_producer,
        "use_sendfile": lambda handler: False,  # never in clear past the TLS
    })


class FTPTestServer:
    """One pyftpdlib server on 127.0.0.1 with one user (home: `root`) and no anonymous login.

    tls: explicit FTPS (AUTH TLS) that *requires* TLS on control and data connections.
    implicit: with certs, implicit FTPS instead: TLS from the first byte (as on port 990).
    late_data_tls: with certs, a data connection's TLS starts only once the transfer command
    came, as vsftpd's does (it takes the data connection up while it handles RETR): a client
    that shakes hands on the data connection before it sends RETR fails (here the server
    closes a data connection that speaks first; vsftpd leaves it waiting).
    masquerade_address: the address put in PASV replies instead of the real one.
    passive_port: the only port used for passive data connections.
    disable: commands (EPSV, SIZE, MLST, ...) answered with 502.
    fail_after: RETR breaks off (426) after sending about this many bytes.
    stall_after: RETR sends about this many bytes, then the whole server hangs until stop().
    end_after: RETR sends exactly this many bytes and reports the transfer complete (226),
    while SIZE still gives the whole file's size.
    tls_resumption: False makes every TLS handshake a full one (no tickets, no session
    cache), so data connections verify the certificate again instead of resuming.
    """

    def __init__(self, root: Path, *, user: str = "feeds", password: str = PASSWORD,
                 certs: CertBundle | None = None, masquerade_address: str | None = None,
                 passive_port: int | None = None, disable: tuple[str, ...] = (),
                 fail_after: int | None = None, stall_after: int | None = None,
                 end_after: int | None = None, tls_resumption: bool = True,
                 implicit: bool = False, late_data_tls: bool = False) -> None:
        self.root = root
        self.user = user
        self.password = password
        self.tls = certs is not None
        self.implicit = implicit and certs is not None
        self.journal = Journal()
        authorizer = DummyAuthorizer()
        authorizer.add_user(user, password, str(root), perm="elr")
        journal = self.journal
        base: type[FTPHandler] = TLS_FTPHandler if certs is not None else FTPHandler
        attrs: dict[str, Any] = {
            "authorizer": authorizer,
            "banner": "feed-worker test FTP server",
            "masquerade_address": masquerade_address,
            "passive_ports": [passive_port] if passive_port else None,
            "permit_foreign_addresses": False,
            "timeout": 30,
            "auth_failed_timeout": 0,  # pyftpdlib delays a 530 by 3 s by default
        }
        if certs is not None:
            attrs.update(certfile=str(certs.cert_file), ssl_context=None,
                         tls_control_required=True, tls_data_required=True)
            if not tls_resumption:
                context = SSL.Context(SSL.TLS_SERVER_METHOD)
                context.use_certificate_chain_file(str(certs.cert_file))
                context.use_privatekey_file(str(certs.cert_file))
                context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
                context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
                attrs["ssl_context"] = context

        def pre_process_command(handler: Any, line: str, cmd: str, arg: str) -> None:
            journal.add("commands", cmd)
            base.pre_process_command(handler, line, cmd, arg)

        def respond(handler: Any, resp: str, logfun: Any = None) -> None:
            journal.add("replies", resp)
            if logfun is None:
                base.respond(handler, resp)
            else:
                base.respond(handler, resp, logfun)

        def disabled(handler: Any, line: str) -> None:
            handler.respond("502 Disabled on this test server.")

        def on_disconnect(handler: Any) -> None:
            journal.add("disconnects", str(handler.remote_ip))

        def on_connect(handler: Any) -> None:
            journal.add("connects", str(handler.remote_ip))

        if self.implicit:
            # The handshake first; the 220 greeting once it is done, over TLS.
            def handle(handler: Any) -> None:
                handler.secure_connection(handler.ssl_context)

            def handle_ssl_established(handler: Any) -> None:
                base.handle(handler)

            attrs["handle"] = handle
            attrs["handle_ssl_established"] = handle_ssl_established
        attrs["pre_process_command"] = pre_process_command
        attrs["respond"] = respond
        attrs["on_disconnect"] = on_disconnect
        attrs["on_connect"] = on_connect
        for command in disable:
            attrs[f"ftp_{command.upper()}"] = disabled
        self._release = threading.Event()
        if fail_after is not None:
            attrs["abstracted_fs"] = _breaking_fs(fail_after, None)
        elif stall_after is not None:
            attrs["abstracted_fs"] = _breaking_fs(stall_after, self._release)
        elif end_after is not None:
            attrs["abstracted_fs"] = _breaking_fs(end_after, None, end=True)

        dtp_base = base.dtp_handler

        def dtp_init(dtp: Any, sock: Any, cmd_channel: Any) -> None:
            journal.add("data_peers", str(sock.getpeername()[0]))
            dtp_base.__init__(dtp, sock, cmd_channel)

        dtp: type[Any] = type("JournalDTP", (dtp_base,), {"__init__": dtp_init})
        if late_data_tls and certs is not None:
            dtp = _late_tls_dtp(dtp)
        attrs["dtp_handler"] = dtp
        # A subclass per server: pyftpdlib keeps its settings (and the SSL context) on the
        # handler class.
        handler = type("TestFTPHandler", (base,), attrs)
        self._ioloop = IOLoop()
        self._server = FTPServer((HOST, 0), handler, ioloop=self._ioloop)
        self.port: int = self._server.address[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ftpd-{self.port}", daemon=True)

    def url(self, path: str, *, user: str | None = None, password: str | None = None,
            scheme: str | None = None, host: str = HOST) -> str:
        """A URL of this server; user/password default to the server's own."""
        user = self.user if user is None else user
        password = self.password if password is None else password
        scheme = scheme or ("ftps" if self.tls else "ftp")
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
        return f"{scheme}://{auth}{host}:{self.port}/{path.lstrip('/')}"

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        finally:
            self._server.close_all()

    def stop(self) -> None:
        self._stop.set()
        self._release.set()
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("the FTP server thread did not stop")
