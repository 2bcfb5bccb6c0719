"""A real SFTP server on loopback: asyncssh, a host key made at start, one password user,
SFTP rooted (chroot) at a directory."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import asyncssh

HOST = "127.0.0.1"
# The test user's password: characters that URLs percent-encode, to catch leaks of either form.
PASSWORD = "s3cret:p@ss/w0rd"


class _PasswordOnly(asyncssh.SSHServer):
    def __init__(self, user: str, password: str, logins: list[tuple[str, bool]],
                 peers: list[str]) -> None:
        self._user = user
        self._password = password
        self._logins = logins
        self._peers = peers

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._peers.append(str(conn.get_extra_info("peername")[0]))

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        ok = username == self._user and password == self._password
        self._logins.append((username, ok))
        return ok


class SFTPTestServer:
    def __init__(self, root: Path, *, user: str = "feeds", password: str = PASSWORD) -> None:
        self.root = root
        self.user = user
        self.password = password
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.logins: list[tuple[str, bool]] = []   # (user, accepted) per password attempt
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

    def url(self, path: str, *, user: str | None = None, password: str | None = None,
            port: int | None = None, host: str = HOST) -> str:
        user = self.user if user is None else user
        password = self.password if password is None else password
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"sftp://{auth}{host}:{port or self.port}/{path.lstrip('/')}"

    def open_connections(self) -> int:
        return sum(not conn.is_closed() for conn in self._connections)

    async def start(self) -> None:
        def server_factory() -> asyncssh.SSHServer:
            return _PasswordOnly(self.user, self.password, self.logins, self.peers)

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
