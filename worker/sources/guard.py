"""Where feeds may be fetched from: global addresses, plus the networks an operator allows.

Feed URLs come from suppliers, so a URL (or a redirect) must not reach the worker's own
network: loopback, private ranges, link-local (169.254.169.254), CGNAT and the like are
refused unless FEED_WORKER_ALLOWED_NETWORKS opens them. The address checked is the one
connected to: the HTTP client connects to exactly the addresses this resolver returned,
the FTP and SFTP clients to the addresses Policy.resolve returned (sources/__init__.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from worker.errors import SourceError, TransientSourceError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Policy:
    def __init__(self, allowed: tuple[Network, ...]) -> None:
        self.allowed = allowed

    def permits(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in n for n in self.allowed if n.version == address.version):
            return True
        return address.is_global

    def check(self, host: str, address: Address) -> None:
        if not self.permits(address):
            raise SourceError(f"{host} resolves to {address}, which is not an allowed "
                              "address (FEED_WORKER_ALLOWED_NETWORKS)")

    def check_literal(self, host: str) -> None:
        """An IP literal in a URL, in any notation (2130706433, 0x7f000001, 0177.0.0.1,
        [::ffff:127.0.0.1]): checked here, since the resolver never sees it."""
        bare = host.strip("[]")
        try:
            address: Address = ipaddress.ip_address(bare)
        except ValueError:
            try:  # the forms inet_aton accepts: decimal, hex and octal parts
                address = ipaddress.IPv4Address(socket.inet_aton(bare))
            except OSError:
                return  # a name: the resolver checks what it resolves to
        self.check(host, address)

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        """(family, address) of every address of the host, all of them allowed."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise TransientSourceError(f"cannot resolve {host}: {exc.strerror}") from None
        found: list[tuple[int, str]] = []
        for family, _, _, _, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            self.check(host, address)
            if (family, str(address)) not in found:
                found.append((int(family), str(address)))
        if not found:
            raise TransientSourceError(f"{host} has no address")
        return found


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that returns only allowed addresses (and refuses the rest)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results: list[ResolveResult] = []
        for fam, address in await self.policy.resolve(host, port):
            entry: Any = {"hostname": host, "host": address, "port": port, "family": fam,
                          "proto": 0, "flags": socket.AI_NUMERICHOST}
            results.append(entry)
        return results

    async def close(self) -> None:
        return None
