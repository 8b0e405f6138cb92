"""The SSRF guard: public addresses only, unless the operator allow-lists a network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from processors.webhooks.core.ssrf import UrlRefused, address_allowed, check_url, parse_networks
from processors.webhooks.resolver import AddressRefused, GuardedResolver, getaddrinfo

PUBLIC = "93.184.215.14"


def resolving_to(
    *addresses: str,
) -> tuple[list[tuple[str, int]], Callable[[str, int], Sequence[str]]]:
    """A fake resolver returning ``addresses``, and the list of lookups it was asked for."""
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        asked.append((host, port))
        return list(addresses)

    return asked, resolve


def check(url: str, *addresses: str, allow: str = "") -> None:
    _, resolve = resolving_to(*addresses)
    check_url(url, parse_networks(allow), resolve)


def test_a_public_address_is_allowed() -> None:
    asked, resolve = resolving_to(PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    check_url("https://hooks.example.com/meterly?x=1", (), resolve)
    assert asked == [("hooks.example.com", 443)]


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://h.example/", 80), ("https://h.example/", 443), ("https://h.example:8443/", 8443),
     ("HTTP://H.Example:81", 81)],
)
def test_the_port_defaults_by_scheme(url: str, port: int) -> None:
    asked, resolve = resolving_to(PUBLIC)
    check_url(url, (), resolve)
    assert asked == [("h.example", port)]


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fe80::1%eth0",
     "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
     "2002:7f00:1::1", "not-an-address"],
)
def test_internal_addresses_are_refused(address: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        check("https://hooks.example.com/", address)
    message = str(refused.value)
    assert "hooks.example.com" in message
    assert address in message
    assert "METERLY_WEBHOOK_ALLOW_NETWORKS" in message


def test_an_ipv4_mapped_public_address_is_judged_as_ipv4() -> None:
    check("https://hooks.example.com/", "::ffff:" + PUBLIC)


def test_the_allow_list_permits_only_its_networks() -> None:
    check("http://localhost:8080/hook", "127.0.0.1", allow="127.0.0.0/8")
    check("http://localhost:8080/hook", "::ffff:127.0.0.1", allow="127.0.0.0/8")
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.1"):
        check("http://internal:8080/hook", "10.0.0.1", allow="127.0.0.0/8")


def test_one_private_address_among_public_ones_refuses_the_url() -> None:
    with pytest.raises(UrlRefused, match=r"192\.168\.0\.7"):
        check("https://hooks.example.com/", PUBLIC, "192.168.0.7")


def test_a_host_resolving_to_nothing_is_refused() -> None:
    with pytest.raises(UrlRefused, match="no address"):
        check("https://hooks.example.com/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://hooks.example.com/", "scheme"),
        ("hooks.example.com/hook", "scheme"),
        ("https://user:s3cr3t@hooks.example.com/", "credentials"),
        ("https://user@hooks.example.com/", "credentials"),
        ("https:///hook", "host"),
        ("http://:80/hook", "URL"),
        ("https://hooks.example.com\\@127.0.0.1/", "URL"),
        ("https://hooks.example.com:99999/", "URL"),
    ],
)
def test_urls_that_are_not_plain_http_are_refused(url: str, message: str) -> None:
    asked, resolve = resolving_to(PUBLIC)
    with pytest.raises(UrlRefused, match=message) as refused:
        check_url(url, (), resolve)
    assert asked == []
    assert "s3cr3t" not in str(refused.value)


@pytest.mark.loopback
def test_the_default_resolver_is_the_system_one() -> None:
    with pytest.raises(UrlRefused, match="localhost"):
        check_url("http://localhost:8080/", (), getaddrinfo)
    check_url("http://localhost:8080/", parse_networks("127.0.0.0/8,::1/128"), getaddrinfo)


def test_parse_networks() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 127.0.0.0/8 , ::1/128 ,") == (
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert parse_networks("10.1.2.3") == (ipaddress.ip_network("10.1.2.3/32"),)
    with pytest.raises(ValueError, match=r"METERLY_WEBHOOK_ALLOW_NETWORKS.*'10\.1\.2\.3/8'"):
        parse_networks("10.1.2.3/8")
    with pytest.raises(ValueError, match="'localhost'"):
        parse_networks("localhost")


def test_address_allowed() -> None:
    allow = parse_networks("10.0.0.0/8")
    assert address_allowed(ipaddress.ip_address(PUBLIC), ())
    assert address_allowed(ipaddress.ip_address("10.9.9.9"), allow)
    assert address_allowed(ipaddress.ip_address("::ffff:10.9.9.9"), allow)
    assert not address_allowed(ipaddress.ip_address("10.9.9.9"), ())
    assert not address_allowed(ipaddress.ip_address("2002:a00:1::1"), ())
    assert address_allowed(ipaddress.ip_address("2002:a00:1::1"), allow)


class FixedResolver(AbstractResolver):
    """Answers every lookup with the same addresses, as a rebinding DNS server might."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=0) for a in self.addresses]

    async def close(self) -> None:
        self.closed = True


@pytest.mark.loopback
def test_the_guarded_resolver_against_localhost() -> None:
    async def main() -> None:
        refusing = GuardedResolver(())
        with pytest.raises(AddressRefused, match="METERLY_WEBHOOK_ALLOW_NETWORKS") as refused:
            await refusing.resolve("localhost", 8080, socket.AF_UNSPEC)
        assert isinstance(refused.value, OSError)
        assert isinstance(refused.value, UrlRefused)
        await refusing.close()

        allowing = GuardedResolver(parse_networks("127.0.0.0/8"))
        results = await allowing.resolve("localhost", 8080, socket.AF_UNSPEC)
        await allowing.close()
        assert results
        assert {r["host"] for r in results} == {"127.0.0.1"}
        assert {r["port"] for r in results} == {8080}

    asyncio.run(main())


def test_the_guarded_resolver_keeps_only_allowed_addresses() -> None:
    async def main() -> None:
        inner = FixedResolver("10.0.0.5", PUBLIC, "::1")
        resolver = GuardedResolver((), inner)
        results = await resolver.resolve("hooks.example.com", 443)
        assert [r["host"] for r in results] == [PUBLIC]
        await resolver.close()
        assert inner.closed

    asyncio.run(main())


def test_a_rebound_name_fails_the_connection_as_a_dns_error() -> None:
    # The URL was checked while the name was public; now it answers with the metadata service.
    async def main() -> None:
        resolver = GuardedResolver((), FixedResolver("169.254.169.254"))
        connector = aiohttp.TCPConnector(resolver=resolver)
        async with aiohttp.ClientSession(connector=connector) as http:
            with pytest.raises(aiohttp.ClientConnectorDNSError) as failed:
                await http.post("http://hooks.example.com/", data=b"{}")
        assert isinstance(failed.value.os_error, AddressRefused)
        assert "169.254.169.254" in str(failed.value)

    asyncio.run(main())


@pytest.mark.loopback
def test_aiohttp_does_not_ask_the_resolver_about_ip_literals() -> None:
    # Why check_url must run on every URL: this connection is only stopped by the port
    # being closed, not by the guard.
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        resolver = GuardedResolver(())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as s:
            with pytest.raises(aiohttp.ClientConnectorError) as failed:
                await s.post(f"http://127.0.0.1:{port}/", data=b"{}")
        assert not isinstance(failed.value.os_error, AddressRefused)

    asyncio.run(main())


@pytest.mark.parametrize(
    "address",
    # Python calls these global; they are protocol assignments, a 6to4 relay and site-local.
    ["192.0.0.8", "192.0.0.1", "192.0.0.170", "192.88.99.1", "fec0::1", "feff::1"],
)
def test_ranges_python_calls_global_that_no_receiver_lives_in_are_refused(address: str) -> None:
    with pytest.raises(UrlRefused, match="not a public address"):
        check("https://hooks.example.com/", address)
    with pytest.raises(UrlRefused):
        check(f"https://{'[' + address + ']' if ':' in address else address}/", address)


@pytest.mark.parametrize(
    "host",
    ["a" * 64 + ".example.com", "a..b.example.com", "-a.example.com", "a-.example.com",
     "exa_mple.com", ".example.com", ("a" * 60 + ".") * 5 + "com", "ex%41mple.com"],
)
def test_a_host_that_is_not_a_dns_name_is_refused_before_any_lookup(host: str) -> None:
    asked, resolve = resolving_to(PUBLIC)
    with pytest.raises(UrlRefused, match="not a valid host name"):
        check_url(f"https://{host}/hook", (), resolve)
    assert asked == []


@pytest.mark.parametrize(
    ("url", "host"),
    [("https://b\u00fccher.example/", "xn--bcher-kva.example"),
     ("https://Hooks.Example.COM./h", "hooks.example.com."),
     ("https://1-2.example/", "1-2.example"),
     ("https://" + "a" * 63 + ".example/", "a" * 63 + ".example")],
)
def test_valid_host_names_are_looked_up(url: str, host: str) -> None:
    asked, resolve = resolving_to(PUBLIC)
    check_url(url, (), resolve)
    assert asked == [(host, 443)]
