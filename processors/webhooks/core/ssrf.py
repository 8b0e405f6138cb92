"""Keeping webhook deliveries off internal networks (SSRF).

A tenant chooses its webhook URL, so without a guard it could make Meterly send requests to
loopback, the cloud metadata service or the cluster's private network. Only public unicast
addresses are reachable, plus networks the operator lists in
``METERLY_WEBHOOK_ALLOW_NETWORKS`` (e.g. a receiver on localhost in a demo).

These are the rules, pure. ``check_url`` judges a URL when it is registered or sent to;
``GuardedResolver`` (``processors.webhooks.resolver``) judges addresses again when aiohttp
connects, because DNS can answer differently by then (DNS rebinding). aiohttp never asks
its resolver about IP-literal hosts, and it follows redirects to any URL, so deliveries must
go through ``check_url`` and must not follow redirects.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

import yarl

ALLOW_SETTING = "METERLY_WEBHOOK_ALLOW_NETWORKS"
SCHEMES = ("http", "https")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Sequence[str]]

# Ranges Python's ``is_global`` calls global that no receiver of ours lives in: IETF protocol
# assignments (RFC 6890; 192.0.0.8 is the IPv4 dummy address), the 6to4 relay anycast
# (RFC 7526, deprecated: a relay forwards to whatever the packet says) and the deprecated IPv6
# site-local space (RFC 3879), which routers inside a site may still route.
NOT_PUBLIC: tuple[Network, ...] = (
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("192.88.99.0/24"),
    ipaddress.ip_network("fec0::/10"),
)
# A host name as DNS allows it (RFC 1123 labels); yarl gives IDNs in their xn-- form.
LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.ASCII)
MAX_NAME = 253


class UrlRefused(ValueError):  # noqa: N818 - the name callers already use
    """A webhook URL, or an address it resolves to, that deliveries may not use."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """Networks from a setting like ``"127.0.0.0/8,::1/128"``; blank entries are skipped."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ValueError(f"{ALLOW_SETTING}: {entry!r} is not a network: {exc}") from exc
    return tuple(networks)


def address_allowed(ip: Address, allow: Sequence[Network]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # The connection goes to the IPv4 address; Python calls every mapped one reserved.
        return address_allowed(ip.ipv4_mapped, allow)
    if any(ip in network for network in allow):
        return True
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    if any(ip in network for network in NOT_PUBLIC):
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None:
        # 6to4 addresses count as global, but a relay delivers them to the embedded IPv4.
        return address_allowed(ip.sixtofour, allow)
    return True


def check_url(url: str, allow: Sequence[Network], resolve: Resolve) -> None:
    """Raise ``UrlRefused`` unless every address ``url``'s host resolves to is allowed.

    ``resolve(host, port)`` returns address strings (``processors.webhooks.resolver.
    getaddrinfo`` asks the system; run it in a thread from async code). Its errors, such as
    ``socket.gaierror``, pass through: a lookup that fails now may succeed later, whereas a
    refusal is final.
    """
    try:
        # yarl is what aiohttp parses URLs with, so both see the same host.
        parsed = yarl.URL(url)
    except (TypeError, ValueError) as exc:
        raise UrlRefused(f"webhook URL is not a valid URL: {exc}") from exc
    if parsed.scheme not in SCHEMES:
        raise UrlRefused(f"webhook URL scheme must be http or https, not {parsed.scheme!r}")
    host = parsed.raw_host
    if not host:
        raise UrlRefused("webhook URL has no host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        # Credentials in a URL end up in logs and delivery records; receivers verify the
        # webhook-signature instead.
        raise UrlRefused("webhook URL must not contain credentials (user:password@)")
    if parse_address(host) is None and not host_name_valid(host):
        raise UrlRefused(f"webhook URL host {host[:80]!r} is not a valid host name")
    port = parsed.port
    assert port is not None  # yarl fills in the default for http and https
    addresses = resolve(host, port)
    if not addresses:
        raise UrlRefused(f"webhook host {host} resolves to no address")
    for text in addresses:
        ip = parse_address(text)
        if ip is None or not address_allowed(ip, allow):
            raise UrlRefused(refusal(host, [text]))


def host_name_valid(host: str) -> bool:
    """True for a DNS host name (or a dotted IPv4 literal) that a resolver can be asked for:
    at most 253 characters of labels of 1 to 63 letters, digits and inner hyphens."""
    name = host.lower().removesuffix(".")
    if not name or len(name) > MAX_NAME:
        return False
    return all(LABEL.fullmatch(label) for label in name.split("."))


def parse_address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def refusal(host: str, addresses: Sequence[str]) -> str:
    if not addresses:
        return f"webhook host {host} resolves to no address"
    listed = ", ".join(addresses)
    return (
        f"webhook host {host} resolves to {listed}, which is not a public address; "
        f"an operator can allow it by adding its network to {ALLOW_SETTING}"
    )
