"""Where a webhook may go: its URL when a run is made, its addresses when it connects.

A webhook URL is ``http`` or ``https``, names a host, holds no credentials
and is at most :data:`MAX_URL` characters long. Its host may not be, nor
resolve to, a loopback, link-local, private or otherwise non-global address
(what a server-side request forgery would aim at: the metadata service, the
database next door, runyard itself), unless ``webhook_allowed_hosts`` lists
the host, the address or a network that holds it.

The URL is checked when the run is made (a literal address or ``localhost``
fails at once, 422) and the addresses again at each connection: the
:class:`GuardedBackend` resolves the name itself and connects only to an
address it checked, so a name that resolves elsewhere by the time the run
ends (DNS rebinding) is refused too (:class:`AddressRefused`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import trio

from .errors import Invalid

# The longest webhook URL taken (as the reference server's default).
MAX_URL = 4096
SCHEMES = ("http", "https")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """The webhook's host is, or resolves to, an address webhooks may not reach."""


class WebhookPolicy:
    """The hosts, addresses and networks allowed despite being non-global."""

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self._names: set[str] = set()
        self._networks: list[Network] = []
        for entry in allowed_hosts:
            entry = entry.strip().strip("[]").rstrip(".").lower()
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._names.add(entry)

    def check_url(self, url: str, name: str = "webhook") -> str:
        """``url`` if a webhook may be sent there; :class:`Invalid` naming ``name`` if not."""
        if len(url) > MAX_URL:
            raise Invalid(f"field '{name}' is longer than {MAX_URL} characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError:
            raise Invalid(f"field '{name}' is not a URL") from None
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise Invalid(f"field '{name}' must be an http or https URL with a host")
        if parts.username is not None or parts.password is not None:
            raise Invalid(f"field '{name}' must not hold credentials; receivers check signatures")
        host = parts.hostname.rstrip(".")
        literal = _address(host)
        local = host == "localhost" or host.endswith(".localhost")
        if (local and not self._named(host)) or (literal and not self.allows(host, literal)):
            raise Invalid(
                f"field '{name}' points at a loopback, link-local or private address;"
                " the server's webhook_allowed_hosts setting must list it"
            )
        return url

    def allows(self, host: str, address: Address) -> bool:
        """Whether a webhook for ``host`` may connect to ``address``."""
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        checked = mapped or address
        if checked.is_global and not checked.is_multicast:
            return True
        return self._named(host) or any(checked in network for network in self._networks)

    def _named(self, host: str) -> bool:
        return host.rstrip(".").lower() in self._names


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: WebhookPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``; refuse it if any of its addresses is not allowed; else connect
        to them in turn (by address: TLS still checks the certificate against ``host``)."""
        addresses = await _resolve(host, port)
        refused = [a for a in addresses if not self._policy.allows(host, a)]
        if refused or not addresses:
            raise AddressRefused(host)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path)  # webhooks go over TCP only

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


async def _resolve(host: str, port: int) -> list[Address]:
    """Every address of ``host``, in the resolver's order, without repeats."""
    literal = _address(host)
    if literal is not None:
        return [literal]
    try:
        found = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}") from exc
    addresses: list[Address] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses
