"""The SSRF guard's adapters: the system resolver, and aiohttp's resolver kept to allowed
addresses (the rules are in ``processors.webhooks.core.ssrf``)."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from processors.webhooks.core.ssrf import (
    Network,
    UrlRefused,
    address_allowed,
    parse_address,
    refusal,
)


class AddressRefused(OSError, UrlRefused):  # noqa: N818 - one family with UrlRefused
    """Raised from ``GuardedResolver``: aiohttp wraps a resolver's ``OSError`` in
    ``ClientConnectorDNSError`` (whose text is this error's ``strerror``), and lets anything
    else escape as an unexpected exception."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class GuardedResolver(AbstractResolver):
    """aiohttp's threaded resolver, keeping only allowed addresses.

    Use it as ``TCPConnector(resolver=GuardedResolver(allow))``.
    """

    def __init__(self, allow: Sequence[Network], inner: AbstractResolver | None = None) -> None:
        self._allow = tuple(allow)
        # ThreadedResolver binds to the running loop, which may not exist yet.
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            ip = parse_address(result["host"])
            if ip is not None and address_allowed(ip, self._allow):
                kept.append(result)
            else:
                refused.append(result["host"])
        if not kept:
            raise AddressRefused(refusal(host, refused))
        return kept

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for _family, _type, _proto, _name, sockaddr in infos]
