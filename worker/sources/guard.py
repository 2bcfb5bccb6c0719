"""Where feeds may be fetched from: global addresses, plus the networks an operator allows.

Feed URLs come from suppliers, so a URL (or a redirect) must not reach the worker's own
network: loopback, private ranges, link-local (169.254.169.254), CGNAT and the like are
refused unless FEED_WORKER_ALLOWED_NETWORKS opens them. The address checked is the one
connected to: the HTTP client connects to exactly the addresses this resolver returned,
the FTP and SFTP clients to the addresses Policy.resolve returned (sources/__init__.py).

An IPv6 address that embeds an IPv4 address (IPv4-mapped, IPv4-translated, IPv4-compatible,
NAT64 64:ff9b::/96, 6to4, Teredo) reaches that IPv4 address, through the host's own stack,
a tunnel or a translator: it is judged by the IPv4 address(es) it embeds alone, so
[64:ff9b::7f00:1] is refused as 127.0.0.1 would be, and [2002:808:808::] allowed as 8.8.8.8
is. The NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215) places the IPv4 address where the
operator's prefix length says (RFC 6052: after /48, /56, /64 or /96), which cannot be told
from the address: it is refused unless FEED_WORKER_ALLOWED_NETWORKS names it (an operator
who allows it vouches for what their translator reaches).
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


# IPv6 forms that spell or reach an IPv4 address, with where it sits in them.
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")          # ::ffff:a.b.c.d, the last 32 bits
TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")    # ::ffff:0:a.b.c.d (SIIT), the same
COMPATIBLE = ipaddress.IPv6Network("::/96")              # ::a.b.c.d (deprecated), the same
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")            # RFC 6052 well-known, the same
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")    # RFC 8215: position unknown
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")         # 2002:AABB:CCDD::, bits 16-47
TEREDO = ipaddress.IPv6Network("2001::/32")              # server bits 32-63, client ~last 32
_NOT_COMPATIBLE = (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1"))


def embedded_ipv4(address: ipaddress.IPv6Address
                  ) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """(the form's name, the IPv4 addresses it reaches) for an IPv6 address that embeds
    IPv4, or None. ::/128 and ::1 are IPv6's own, not IPv4-compatible (RFC 4291)."""
    last32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in MAPPED:
        return "IPv4-mapped", (last32,)
    if address in TRANSLATED:
        return "IPv4-translated", (last32,)
    if address in COMPATIBLE and address not in _NOT_COMPATIBLE:
        return "IPv4-compatible", (last32,)
    if address in NAT64:
        return "NAT64", (last32,)
    if address.sixtofour is not None:
        return "6to4", (address.sixtofour,)
    if address.teredo is not None:  # (server, client), the client's bits un-inverted
        return "Teredo", address.teredo
    return None


class Policy:
    def __init__(self, allowed: tuple[Network, ...]) -> None:
        self.allowed = allowed

    def permits(self, address: Address) -> bool:
        return self.refusal(address) is None

    def refusal(self, address: Address) -> str | None:
        """Why the address is refused ("127.0.0.1", "64:ff9b::7f00:1 (NAT64 of
        127.0.0.1)"), or None when it is allowed."""
        if isinstance(address, ipaddress.IPv6Address):
            if address in NAT64_LOCAL:
                if self._listed(address):
                    return None
                return f"{address} (NAT64 local-use prefix, {NAT64_LOCAL})"
            form = embedded_ipv4(address)
            if form is not None:
                name, inner = form
                refused = [str(v4) for v4 in inner if not self._permitted(v4)]
                if not refused:
                    return None
                return f"{address} ({name} of {' and '.join(refused)})"
        return None if self._permitted(address) else str(address)

    def _listed(self, address: Address) -> bool:
        return any(address in n for n in self.allowed if n.version == address.version)

    def _permitted(self, address: Address) -> bool:
        return self._listed(address) or address.is_global

    def check(self, host: str, address: Address) -> None:
        refusal = self.refusal(address)
        if refusal is None:
            return
        if host.strip("[]") == str(address):  # an IP literal, written as it is shown
            raise SourceError(f"{refusal} is not an allowed address "
                              "(FEED_WORKER_ALLOWED_NETWORKS)")
        raise SourceError(f"{host} resolves to {refusal}, which is not an allowed "
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
