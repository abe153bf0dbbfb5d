"""Where a webhook may go: the checks that keep callbacks from reaching our own network.

A destination is refused when its URL is not plain http(s) or carries credentials, and when its
host name resolves to any address that is not on the public internet: loopback, private,
link-local (cloud metadata lives there), CGNAT, multicast, reserved, unspecified, and those same
addresses wrapped in IPv6 (IPv4-mapped, NAT64, 6to4, Teredo). The check runs when a job is
submitted and again before every send; the sender then connects to exactly the addresses that
were checked, so a name that re-resolves somewhere else later (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], list[IPAddress]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# Named explicitly so the rule reads as intended even where the stdlib's tables change.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")


class DestinationRefused(ValueError):
    """A webhook URL that may not be called. `permanent` is False when the refusal rests on what
    the name resolves to right now (it may resolve elsewhere later)."""

    def __init__(self, reason: str, *, permanent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Destination:
    """A checked URL: where to connect (`addresses`) and what to call the host on the wire."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def host_is_literal(self) -> bool:
        return _literal_address(self.host) is not None


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public destination, or None when it is one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = forbidden_reason(inner)
        return f"{reason} (inside {address})" if reason else None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "a CGNAT address"),
        (isinstance(address, ipaddress.IPv6Address) and address in SITE_LOCAL, "site-local"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def parse_destination(url: str) -> tuple[SplitResult, str, int]:
    """Syntax checks only: http(s), a host, no credentials, a valid port."""
    if not isinstance(url, str) or not url.strip():
        raise DestinationRefused("the URL is empty")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise DestinationRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"the URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DestinationRefused("only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise DestinationRefused("credentials in the URL are not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise DestinationRefused("the URL has no host")
    if "%" in host:
        raise DestinationRefused("scoped IPv6 addresses are not allowed")
    return parts, host, port if port is not None else DEFAULT_PORTS[scheme]


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in resolver order, without repeats."""
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(
            f"the host {host!r} does not resolve ({exc})", permanent=False
        ) from None
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise DestinationRefused(f"the host {host!r} has no IP address", permanent=False)
    return found


def resolve_destination(url: str, *, allow_private: bool) -> Destination:
    """Check `url` and resolve its host now: where the sender must connect, or
    `DestinationRefused`. With `allow_private` (development and tests) every address is
    accepted, but the name is still resolved here so the connection goes where we looked."""
    parts, host, port = parse_destination(url)
    addresses = resolve(host, port)
    if not allow_private:
        for address in addresses:
            _refuse_if_forbidden(host, address)
    return Destination(
        url=url, scheme=parts.scheme.lower(), host=host, port=port, addresses=tuple(addresses)
    )


def _refuse_if_forbidden(host: str, address: IPAddress) -> None:
    reason = forbidden_reason(address)
    if reason is None:
        return
    if _literal_address(host) is not None:
        raise DestinationRefused(f"{host} is {reason}; webhooks go only to public addresses")
    # Neither the address nor its kind is named: the message reaches the tenant (a 422, the
    # delivery log), and what our internal names resolve to is none of their business.
    raise DestinationRefused(
        f"the host {host!r} resolves to a private address; webhooks go only to public addresses",
        permanent=False,
    )


class HostLookups:
    """What webhook hosts resolve to, looked up once per host and kept for `ttl_seconds`.

    Submit-time checks go through one of these: a batch of ten thousand jobs calling back to one
    host costs one lookup, and so does the next batch within the TTL. A name that does not
    resolve is remembered as well. The sender does not use it: it resolves afresh before every
    attempt and connects to what it checked. Safe to share between threads; `addresses` blocks,
    so async code calls it in a thread."""

    def __init__(
        self,
        ttl_seconds: float = 30.0,
        *,
        max_hosts: int = 4096,
        lookup: Lookup | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_hosts = max_hosts
        self._lookup = lookup or resolve
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, tuple[IPAddress, ...] | DestinationRefused]] = {}

    def _cached(self, host: str, now: float) -> tuple[IPAddress, ...] | DestinationRefused | None:
        with self._lock:
            found = self._known.get(host)
        if found is None or found[0] <= now:
            return None
        return found[1]

    def _remember(
        self, host: str, outcome: tuple[IPAddress, ...] | DestinationRefused, now: float
    ) -> None:
        with self._lock:
            if len(self._known) >= self.max_hosts:
                self._known = {h: kept for h, kept in self._known.items() if kept[0] > now}
                if len(self._known) >= self.max_hosts:
                    self._known.clear()
            self._known[host] = (now + self.ttl_seconds, outcome)

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """`resolve(host, port)`, from the cache while it is fresh."""
        now = self._clock()
        outcome = self._cached(host, now)
        if outcome is None:
            try:
                outcome = tuple(self._lookup(host, port))
            except DestinationRefused as exc:
                outcome = exc
            self._remember(host, outcome, now)
        if isinstance(outcome, DestinationRefused):
            raise DestinationRefused(outcome.reason, permanent=outcome.permanent)
        return list(outcome)


def destination_host(url: str) -> tuple[str, int] | None:
    """The (host, port) a webhook URL would be resolved at, or None when its form is already
    refused or its host is an address literal (nothing to look up)."""
    try:
        _parts, host, port = parse_destination(url)
    except DestinationRefused:
        return None
    return None if _literal_address(host) is not None else (host, port)


def check_destination(
    url: str, allow_private: bool, *, lookup: Lookup = resolve
) -> list[IPAddress]:
    """Submit-time check of a webhook URL; raises `DestinationRefused` with a clear reason.

    Returns the addresses the host resolves to, all public. With `allow_private` only the URL's
    form is checked and nothing is resolved (a dev/test name need not exist yet): the result is
    the literal address when the host is one, else empty. A refusal maps to a 422 on
    `webhook_url`; its message never echoes credentials. The sender checks again before every
    attempt (`resolve_destination`). `allow_private` may be passed by position or by name.
    `lookup` resolves the host (`HostLookups.addresses` to share lookups between URLs).
    """
    _parts, host, port = parse_destination(url)
    if allow_private:
        literal = _literal_address(host)
        return [literal] if literal is not None else []
    addresses = lookup(host, port)
    for address in addresses:
        _refuse_if_forbidden(host, address)
    return addresses
