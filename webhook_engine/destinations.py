"""Where webhooks may be sent: public addresses only, plus networks the platform trusts.

Pure functions and a policy object; the only I/O is name resolution. Checked when a subscription
is saved (``url_check``) and again on every connection the transport opens (``addresses_check``,
whose addresses are the ones connected to, so there is no window for DNS rebinding).

Python 3.11's ``ipaddress`` misses some forms (``::ffff:127.0.0.1`` is not ``is_loopback``, and
``192.0.0.8``, ``64:ff9b::7f00:1`` and ``2002:7f00:1::`` report ``is_global``), so addresses with
an IPv4 address inside (mapped, compatible, NAT64, 6to4, Teredo) are judged by that address, and a
few ranges are blocked explicitly. Numeric host forms (``2130706433``, ``0x7f000001``,
``0177.0.0.1``, ``127.1``) are caught because the resolved address is what is checked.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Ranges that ipaddress on Python 3.11 reports as global, or that route to internal workloads.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT; some clouds' metadata (100.100.100.200)
        "192.0.0.0/24",  # IETF protocol assignments; Oracle cloud metadata (192.0.0.192)
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",
        "224.0.0.0/3",  # multicast and class E
        "2001:20::/28",
        "fec0::/10",  # site-local (deprecated, still routed internally by some networks)
        "64:ff9b:1::/48",  # local-use NAT64: translates to networks of the operator's choosing
        "5f00::/16",
        "3fff::/20",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: IPv4 in the last 32 bits
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


# What kind of address a blocked one is: English in ``DestinationBlocked.reason`` and its str()
# (stored with a delivery attempt), translated by ``DestinationBlocked.message()``.
_IPV6_FORM = " in IPv6 form"
_LOOPBACK = gettext_noop("a loopback address")
_LINK_LOCAL = gettext_noop("a link-local address (where cloud metadata services live)")
_MULTICAST = gettext_noop("a multicast address")
_UNSPECIFIED = gettext_noop("an unspecified address")
_PRIVATE = gettext_noop("a private-network address")
_RESERVED = gettext_noop("a reserved address")
_NOT_PUBLIC = gettext_noop("not a public address")
_KINDS = {_LOOPBACK, _LINK_LOCAL, _MULTICAST, _UNSPECIFIED, _PRIVATE, _RESERVED, _NOT_PUBLIC}


class DestinationBlocked(Exception):
    """The destination resolves to an address the policy does not allow.

    Its str() is English (it is stored with the attempt that was refused); ``message()`` says the
    same in the active language, for a person reading it now.
    """

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if host == address:
            super().__init__(f"{address} is {reason}; webhooks are only sent to public addresses.")
        else:
            super().__init__(
                f"{host} resolves to {address}, which is {reason}; "
                "webhooks are only sent to public addresses."
            )

    def message(self) -> str:
        """The refusal in the active language (the reader's in the admin and the API)."""
        base = self.reason.removesuffix(_IPV6_FORM)
        kind = _(base) if base in _KINDS else base
        if self.reason.endswith(_IPV6_FORM):
            kind = _("%(kind)s in IPv6 form") % {"kind": kind}
        if self.host == self.address:
            return _("%(address)s is %(kind)s; webhooks are only sent to public addresses.") % {
                "address": self.address,
                "kind": kind,
            }
        return _(
            "%(host)s resolves to %(address)s, which is %(kind)s; webhooks are only sent to "
            "public addresses."
        ) % {"host": self.host, "address": self.address, "kind": kind}


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _describe(address: IPAddress) -> str:
    if address.is_loopback:
        return _LOOPBACK
    if address.is_link_local:
        return _LINK_LOCAL
    if address.is_multicast:
        return _MULTICAST
    if address.is_unspecified:
        return _UNSPECIFIED
    if address.is_private:
        return _PRIVATE
    if address.is_reserved:
        return _RESERVED
    return _NOT_PUBLIC


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses webhooks may be sent to: public ones, plus ``allowed_networks``."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> DestinationPolicy:
        return cls(tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs))

    def blocked_reason(self, address: IPAddress) -> str | None:
        """None when the address is allowed, else what kind of address it is."""
        if address.version == 6 and address.scope_id:  # type: ignore[union-attr]
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if any(address in network for network in self.allowed_networks):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                reason = self.blocked_reason(inner)
                return None if reason is None else f"{reason}{_IPV6_FORM}"
        if any(address in network for network in _EXTRA_BLOCKED):
            return _describe(address)
        if not address.is_global or address.is_multicast or address.is_reserved:
            return _describe(address)
        return None


class HostNameInvalid(ValueError):
    """A host name no resolver can look up: its IDNA encoding fails (an empty label, a label
    over 63 characters, left-to-right and right-to-left letters mixed, ...)."""


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, without duplicates.

    Raises ``socket.gaierror`` when the name does not resolve, ``HostNameInvalid`` when it is
    no possible DNS name.
    """
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    addresses: list[IPAddress] = []
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise HostNameInvalid(host) from exc
    for _family, _type, _proto, _name, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def addresses_check(host: str, port: int, policy: DestinationPolicy) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses if every one is allowed.

    Raises ``DestinationBlocked`` naming the first address that is not, ``socket.gaierror`` when
    the name does not resolve.
    """
    addresses = resolve(host, port)
    for address in addresses:
        reason = policy.blocked_reason(address)
        if reason is not None:
            raise DestinationBlocked(host.strip("[]"), str(address), reason)
    return addresses


@functools.lru_cache(maxsize=8192)
def receiver_host(url: str) -> str:
    """The host and port a webhook URL's requests go to (``"hooks.example.org:443"``): what the
    webhooks of one receiver host share. The host name in lower case, the port the scheme's
    default when the URL names none; the URL as it is when it cannot be read as one (checked
    URLs always can). Never raises; parsed once per URL (every claim and attempt asks)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    if not parts.hostname:
        return url
    return f"{parts.hostname}:{port or (443 if parts.scheme == 'https' else 80)}"


def url_check(url: str, policy: DestinationPolicy) -> None:
    """Check a webhook URL before it is saved.

    Raises ``ValueError`` for a URL that is not http(s) with a host, or whose host is no
    possible DNS name (its message in the active language: this runs while a person saves),
    ``DestinationBlocked`` for a destination the policy refuses, ``socket.gaierror`` for a host
    name that does not resolve.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise ValueError(_("Use an http:// or https:// URL."))
    if not parts.hostname:
        raise ValueError(_("The URL has no host name."))
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            _(
                "Remove the user name and password from the URL and use basic authentication: "
                "credentials in a URL end up in logs."
            )
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # out of range, or 0: nothing can be connected to there
        raise ValueError(_("The URL's port is not a number between 1 and 65535."))
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses_check(parts.hostname, port, policy)
    except HostNameInvalid:
        # The resolver's IDNA encoding refuses the name (an empty label, a label mixing left-to-
        # right and right-to-left letters, a private-use character, ...): no DNS name is it.
        raise ValueError(
            _("%(host)s is not a valid host name; check the URL.") % {"host": parts.hostname}
        ) from None
