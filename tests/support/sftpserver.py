"""A real SFTP server on loopback: asyncssh, a host key made at start, one user who logs in
with a password, an authorized key, or both, SFTP rooted (chroot) at a directory."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncssh

HOST = "127.0.0.1"
# The test user's password: characters that URLs percent-encode, to catch leaks of either form.
PASSWORD = "s3cret:p@ss/w0rd"


class _Auth(asyncssh.SSHServer):
    """One connection's authentication: the password, an authorized key, or (`both`) the
    key first and then the password, as OpenSSH's `AuthenticationMethods
    publickey,password` asks (a key alone gets a partial success)."""

    def __init__(self, server: SFTPTestServer) -> None:
        self._server = server
        self._key_accepted = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._server.peers.append(str(conn.get_extra_info("peername")[0]))
        if self._server.both:
            send_success = conn.send_userauth_success

            def after_both() -> Any:
                # The auth that succeeded is the key's: ask for the password too. (Newer
                # asyncssh keeps the auth at work in `auth`, older in `_auth`; newer sends
                # success with a coroutine, older with a plain call.)
                auth = getattr(conn, "auth", None) or getattr(conn, "_auth", None)
                if type(auth).__name__ != "_ServerPublicKeyAuth":
                    return send_success()
                self._key_accepted = True
                conn.send_userauth_failure(True)
                return asyncio.sleep(0) if inspect.iscoroutinefunction(send_success) else None

            conn.send_userauth_success = after_both  # type: ignore[method-assign]

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return self._server.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        ok = username == self._server.user and password == self._server.password
        self._server.logins.append((username, ok))
        return ok and (self._key_accepted or not self._server.both)

    def public_key_auth_supported(self) -> bool:
        return bool(self._server.keys)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = username == self._server.user and any(
            key.public_data == k.public_data for k in self._server.keys)
        self._server.key_logins.append((username, key.get_fingerprint("sha256"), ok))
        return ok


class SFTPTestServer:
    """`password`: None turns password logins off. `keys`: the public keys the user may
    log in with. `both`: a login needs an authorized key and then the password."""

    def __init__(self, root: Path, *, user: str = "feeds", password: str | None = PASSWORD,
                 keys: Sequence[asyncssh.SSHKey] = (), both: bool = False) -> None:
        self.root = root
        self.user = user
        self.password = password
        self.keys = list(keys)
        self.both = both
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.logins: list[tuple[str, bool]] = []   # (user, accepted) per password attempt
        # (user, SHA256 fingerprint, authorized) per public key offered or signed with
        self.key_logins: list[tuple[str, str, bool]] = []
        self.peers: list[str] = []                 # client address of each connection
        self.port = 0
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: list[asyncssh.SSHServerConnection] = []

    def known_hosts(self) -> asyncssh.SSHKnownHosts:
        """known_hosts that trust exactly this server's host key on its address."""
        return asyncssh.import_known_hosts(self.known_hosts_line())

    def known_hosts_line(self, host: str = HOST) -> str:
        """The known_hosts line of this server's host key under `host` (name or address)."""
        return f"[{host}]:{self.port} {self.host_key.export_public_key().decode().strip()}\n"

    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint, as ssh-keygen -lf prints it."""
        return str(self.host_key.get_fingerprint("sha256"))

    def url(self, path: str, *, user: str | None = None, password: str | None = None,
            port: int | None = None, host: str = HOST) -> str:
        """A URL of this server; user/password default to the server's own ("" for the
        password: none in the URL)."""
        user = self.user if user is None else user
        password = (self.password or "") if password is None else password
        secret = f":{quote(password, safe='')}" if password else ""
        auth = f"{quote(user, safe='')}{secret}@"
        return f"sftp://{auth}{host}:{port or self.port}/{path.lstrip('/')}"

    def open_connections(self) -> int:
        return sum(not conn.is_closed() for conn in self._connections)

    async def start(self) -> None:
        def server_factory() -> asyncssh.SSHServer:
            return _Auth(self)

        def sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
            return asyncssh.SFTPServer(chan, chroot=str(self.root).encode())

        def acceptor(conn: asyncssh.SSHServerConnection) -> None:
            self._connections.append(conn)

        self._acceptor = await asyncssh.listen(
            HOST, 0,
            server_host_keys=[self.host_key],
            server_factory=server_factory,
            sftp_factory=sftp_factory,
            allow_scp=False,
            acceptor=acceptor,
            login_timeout=10,
        )
        self.port = self._acceptor.get_port()

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        for conn in self._connections:
            conn.close()
            await conn.wait_closed()
