"""The address policy on IPv6 forms that embed an IPv4 address: each is judged by the IPv4
address it reaches, as that address would be on its own."""

from __future__ import annotations

import ipaddress

import pytest

from worker.errors import SourceError
from worker.settings import Settings
from worker.sources.guard import Policy

IPV4 = {  # kind -> (an address of that kind, allowed by the default policy)
    "loopback": ("127.0.0.1", False),
    "private": ("10.1.2.3", False),
    "private-192": ("192.168.1.20", False),
    "link-local": ("169.254.10.20", False),
    "metadata": ("169.254.169.254", False),
    "cgnat": ("100.64.0.1", False),
    "unspecified": ("0.0.0.0", False),
    "global": ("8.8.8.8", True),
}
TEREDO_PEER = ipaddress.IPv4Address("65.54.227.120")  # a global Teredo server (RFC 4380)


def teredo(server: ipaddress.IPv4Address, client: ipaddress.IPv4Address) -> str:
    """2001:0:<server>:<flags>:<port, inverted>:<client, inverted> (RFC 4380)."""
    value = (0x20010000 << 96 | int(server) << 64 | 0x8000 << 48 | (0x63BF ^ 0xFFFF) << 32
             | int(client) ^ 0xFFFFFFFF)
    return str(ipaddress.IPv6Address(value))


def forms(v4: str) -> dict[str, str]:
    """Every IPv6 spelling of the IPv4 address that the policy must see through."""
    a = ipaddress.IPv4Address(v4)
    hi, lo = int(a) >> 16, int(a) & 0xFFFF
    return {
        "mapped": f"::ffff:{v4}",
        "translated": f"::ffff:0:{v4}",
        "compatible": f"::{v4}",
        "nat64": f"64:ff9b::{v4}",
        "6to4": f"2002:{hi:x}:{lo:x}::1",
        "teredo-client": teredo(TEREDO_PEER, a),
        "teredo-server": teredo(a, TEREDO_PEER),
    }


CASES = [(kind, form, address, allowed)
         for kind, (v4, allowed) in IPV4.items()
         for form, address in forms(v4).items()]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(("kind", "form", "address", "allowed"), CASES,
                         ids=[f"{k}-{f}" for k, f, _, _ in CASES])
def test_each_form_is_judged_by_its_ipv4_address(kind: str, form: str, address: str,
                                                 allowed: bool) -> None:
    policy = Policy(())
    assert policy.permits(ip(IPV4[kind][0])) is allowed  # the IPv4 address on its own
    assert policy.permits(ip(address)) is allowed, address


@pytest.mark.parametrize("address", [
    "64:ff9b::7f00:1",      # NAT64 of 127.0.0.1
    "2002:7f00:1::",        # 6to4 of 127.0.0.1
    "::127.0.0.1",          # IPv4-compatible 127.0.0.1
    "::ffff:127.0.0.1",     # IPv4-mapped
    "::ffff:0:7f00:1",      # IPv4-translated
    "64:ff9b::a9fe:a9fe",   # NAT64 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # RFC 4380's example: client 192.0.2.45
])
def test_the_reported_forms_are_refused(address: str) -> None:
    policy = Policy(())
    assert not policy.permits(ip(address))
    with pytest.raises(SourceError, match=r"is not an allowed address"):
        policy.check_literal(f"[{address}]")


def test_the_refusal_names_the_form_and_the_embedded_address() -> None:
    with pytest.raises(SourceError) as caught:
        Policy(()).check_literal("[64:ff9b::7f00:1]")
    assert str(caught.value) == ("64:ff9b::7f00:1 (NAT64 of 127.0.0.1) is not an allowed "
                                 "address (FEED_WORKER_ALLOWED_NETWORKS)")
    with pytest.raises(SourceError, match=r"\(Teredo of 10\.0\.0\.1\)"):
        Policy(()).check("h", ip(teredo(TEREDO_PEER, ipaddress.IPv4Address("10.0.0.1"))))


def test_teredo_needs_both_of_its_addresses_allowed() -> None:
    both = teredo(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("127.0.0.1"))
    with pytest.raises(SourceError, match=r"\(Teredo of 10\.0\.0\.1 and 127\.0\.0\.1\)"):
        Policy(()).check("h", ip(both))
    assert Policy(networks("10.0.0.0/8,127.0.0.1/32")).permits(ip(both))
    assert not Policy(networks("10.0.0.0/8")).permits(ip(both))


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return Settings(allowed_networks=text).networks()


@pytest.mark.parametrize("form", sorted(forms("127.0.0.1")))
def test_an_allowed_ipv4_network_opens_its_embedded_forms_only(form: str) -> None:
    policy = Policy(networks("127.0.0.1/32"))
    assert policy.permits(ip(forms("127.0.0.1")[form]))
    assert not policy.permits(ip(forms("127.0.0.2")[form]))
    assert not policy.permits(ip(forms("10.0.0.1")[form]))


def test_allowing_an_ipv6_prefix_does_not_open_what_it_embeds() -> None:
    policy = Policy(networks("64:ff9b::/96,2002::/16,::ffff:0:0/96,::/96"))
    for address in ("64:ff9b::7f00:1", "2002:7f00:1::", "::ffff:127.0.0.1", "::127.0.0.1"):
        assert not policy.permits(ip(address)), address
    assert policy.permits(ip("64:ff9b::808:808"))


@pytest.mark.parametrize("v4", ["8.8.8.8", "127.0.0.1"])
def test_the_nat64_local_use_prefix_is_refused_unless_listed(v4: str) -> None:
    """Where its IPv4 address sits depends on the operator's prefix length (RFC 8215,
    RFC 6052): nothing is judged by it, and only an operator who lists it opens it."""
    address = ip(f"64:ff9b:1::{v4}")
    with pytest.raises(SourceError, match=r"NAT64 local-use prefix, 64:ff9b:1::/48"):
        Policy(()).check("h", address)
    assert not Policy(networks("127.0.0.1/32")).permits(address)
    assert Policy(networks("64:ff9b:1::/48")).permits(address)


def test_ipv6_loopback_and_unspecified_are_not_ipv4_compatible() -> None:
    """::1 and :: sit in ::/96 but are IPv6's own: judged (and listed) as IPv6."""
    assert not Policy(()).permits(ip("::1"))
    assert not Policy(()).permits(ip("::"))
    assert Policy(networks("::1/128")).permits(ip("::1"))
    assert not Policy(networks("0.0.0.0/8")).permits(ip("::1"))


def test_plain_ipv6_is_unchanged() -> None:
    policy = Policy(())
    assert policy.permits(ip("2606:4700::1111"))
    for address in ("fe80::1", "fc00::1", "fd12:3456::1"):
        assert not policy.permits(ip(address)), address
