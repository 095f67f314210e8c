"""Counting failures (wrong API keys, wrong admin passwords) in the shared cache.

Each counter is keyed by what is being guessed from (a client address, a username) and lives
for a window that starts at its first failure: past the limit, further attempts are refused
until the window ends. The counters live in Django's default cache, so every process of a
deployment counts together when ``DJANGO_CACHE_URL`` points at Redis (the README's Deploy does;
``check --deploy`` warns otherwise). The increment is Redis's atomic ``INCR``: processes
racing each other never let more than the limit through.

``client_address`` is where a request comes from: ``REMOTE_ADDR``, or behind
``WEBHOOKS_TRUSTED_PROXIES`` reverse proxies the address the outermost of them saw, read from
the right of ``X-Forwarded-For`` (entries further left are the client's to write, so they are
never trusted).
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)


def client_address(request: HttpRequest) -> str:
    """The client's address, trusting ``X-Forwarded-For`` only as far as the configured
    proxies (``WEBHOOKS_TRUSTED_PROXIES``, 0 by default: the connection's own address)."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = int(settings.WEBHOOKS_TRUSTED_PROXIES)
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
    if proxies <= 0 or not forwarded:
        return remote
    addresses = [address.strip() for address in forwarded.split(",")]
    return addresses[-min(proxies, len(addresses))] or remote


def _key(scope: str, ident: str) -> str:
    digest = hashlib.sha256(ident.encode("utf-8", errors="replace")).hexdigest()[:32]
    return f"failures:{scope}:{digest}"


def failures_wait(*, scope: str, idents: list[str], limit: int, window_seconds: float) -> float:
    """Seconds until an attempt of ``scope`` from any of ``idents`` is allowed again (0 if it is:
    none of them has failed more than ``limit`` times in its window)."""
    try:
        keys = [_key(scope, ident) for ident in idents]
        counts = cache.get_many(keys)
        over = [key for key in keys if int(counts.get(key) or 0) > limit]
        if not over:
            return 0.0
        starts = cache.get_many([f"{key}:start" for key in over])
    except Exception:
        # A cache outage must not lock everyone out; it is logged, and the limit is off.
        logger.exception("The failure counters cannot be read; not limiting %s", scope)
        return 0.0
    now = time.time()
    waits = [
        max(1.0, float(starts.get(f"{key}:start") or now) + window_seconds - now) for key in over
    ]
    return max(waits)


def failure_record(*, scope: str, idents: list[str], window_seconds: float) -> int:
    """Count one failure of ``scope`` for each of ``idents``; the highest count, this one
    included (a window starts at an ident's first failure)."""
    highest = 0
    timeout = max(1, int(window_seconds))
    for ident in idents:
        key = _key(scope, ident)
        try:
            if cache.add(key, 0, timeout=timeout):
                cache.set(f"{key}:start", time.time(), timeout=timeout)
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=timeout)
                count = 1
        except Exception:
            logger.exception("A failure of %s cannot be counted", scope)
            continue
        highest = max(highest, int(count))
    return highest
