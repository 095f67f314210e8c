"""Who may read the metrics: the checks shared by ``GET /metrics`` and a worker's metrics port.

Never public by default. ``WEBHOOKS_METRICS_TOKEN`` (sent as ``Authorization: Bearer <token>``)
and ``WEBHOOKS_METRICS_ALLOWED_NETWORKS`` (CIDRs) are the checks; a request must pass every one
that is configured, and with neither configured the metrics do not exist (404).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Refusal:
    """Why a request may not read the metrics, as an HTTP answer."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


NOT_CONFIGURED = Refusal(404, "Not Found")
UNAUTHORIZED = Refusal(401, "Unauthorized", (("WWW-Authenticate", 'Bearer realm="metrics"'),))
FORBIDDEN = Refusal(403, "Forbidden")


def metrics_enabled() -> bool:
    """Whether the metrics are served at all: a token or networks are configured."""
    return bool(settings.WEBHOOKS_METRICS_TOKEN or settings.WEBHOOKS_METRICS_ALLOWED_NETWORKS)


def metrics_access_refusal(*, authorization: str, client_address: str) -> Refusal | None:
    """``None`` when a request with this ``Authorization`` header from ``client_address`` may
    read the metrics, else the refusal to answer with.

    404 when neither a token nor networks are configured; 403 when networks are configured and
    the address is in none of them (or is not an address); 401 when a token is configured and
    the header does not carry it (compared in constant time).
    """
    token: str = settings.WEBHOOKS_METRICS_TOKEN
    networks: list[str] = settings.WEBHOOKS_METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return NOT_CONFIGURED
    if networks and not _address_allowed(client_address, networks):
        return FORBIDDEN
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return UNAUTHORIZED
    return None


def _address_allowed(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


def client_address(*, remote_addr: str, forwarded_for: str | None) -> str:
    """The client's address: ``REMOTE_ADDR``, or behind ``WEBHOOKS_TRUSTED_PROXIES`` proxies the
    address the outermost trusted proxy saw in ``X-Forwarded-For``.

    ``X-Forwarded-For`` is never read without trusted proxies: a client could write any
    address there.
    """
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES")
    if not isinstance(proxies, int) or proxies <= 0 or not forwarded_for:
        return remote_addr
    addresses = [item.strip() for item in forwarded_for.split(",")]
    return addresses[-min(proxies, len(addresses))]
