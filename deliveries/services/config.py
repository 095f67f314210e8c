"""What the delivery stages read from settings, built once per process: the retry schedule, the
transport (its connection pools), the platform's Ed25519 keys and its ECDSA key (edudip), and
the open files a sending process needs."""

from __future__ import annotations

import logging
import os
import resource
import threading
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from subscriptions.selectors import destination_policy
from webhook_engine.retry import RetryPolicy
from webhook_engine.signing import ecdsa_key_load, ed25519_key_load
from webhook_engine.transport import Transport

logger = logging.getLogger(__name__)

# Open files a sending process needs besides its connections to receivers: its database and
# broker connections, log and metric files, the worker pool's pipes.
_OPEN_FILES_MARGIN = 256


def retry_policy() -> RetryPolicy:
    """The retry schedule configured in settings."""
    return RetryPolicy(
        base_seconds=settings.WEBHOOKS_RETRY_BASE_SECONDS,
        max_attempts=settings.WEBHOOKS_RETRY_MAX_ATTEMPTS,
        window_seconds=settings.WEBHOOKS_RETRY_WINDOW_SECONDS,
        jitter=settings.WEBHOOKS_RETRY_JITTER,
    )


_transports: dict[tuple[int, tuple[str, ...]], Transport] = {}
_transports_lock = threading.Lock()


def transport_get() -> Transport:
    """This process's transport (connection pools are not shared across forks)."""
    key = (os.getpid(), tuple(settings.WEBHOOKS_ALLOWED_NETWORKS))
    transport = _transports.get(key)
    if transport is None:
        with _transports_lock:
            transport = _transports.get(key)
            if transport is None:
                # A connection per send thread to one host, kept alive between attempts.
                transport = Transport(
                    policy=destination_policy(), pool_maxsize=settings.WEBHOOKS_SEND_THREADS
                )
                _transports.clear()
                _transports[key] = transport
    return transport


@lru_cache(maxsize=4)
def _ed25519_keys(values: tuple[str, ...]) -> tuple[Ed25519PrivateKey, ...]:
    return tuple(ed25519_key_load(value) for value in values)


def ed25519_keys() -> tuple[Ed25519PrivateKey, ...]:
    """The platform's Ed25519 signing keys (``WEBHOOKS_ED25519_KEYS``), the current one first."""
    return _ed25519_keys(tuple(settings.WEBHOOKS_ED25519_KEYS))


@lru_cache(maxsize=4)
def _ecdsa_key(value: str) -> EllipticCurvePrivateKey:
    return ecdsa_key_load(value)


def ecdsa_key() -> EllipticCurvePrivateKey | None:
    """The platform's P-256 key for the edudip profile (``WEBHOOKS_ECDSA_KEY``), if configured."""
    value = settings.WEBHOOKS_ECDSA_KEY
    return _ecdsa_key(value) if value else None


def open_files_fit(threads: int) -> int:
    """Raise this process's limit of open files (the soft one, up to the hard one) so that
    ``threads`` requests in flight fit, each with its connection, and as many kept alive
    between attempts: 2 x ``threads`` plus a margin. Without it a process started with the
    usual soft limit of 1,024 would, with 512 threads busy on hanging receivers, fail to open
    connections to healthy ones. Logs a warning when the hard limit is too low (raise
    ``LimitNOFILE``); returns the soft limit in force."""
    needed = 2 * threads + _OPEN_FILES_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        fitted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if fitted > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fitted, hard))
            soft = fitted
        if soft < needed:
            logger.warning(
                "This process may open %d files (its hard limit), fewer than the %d that "
                "WEBHOOKS_SEND_THREADS=%d requests in flight may need: raise the limit "
                "(LimitNOFILE= in its systemd unit, ulimit -n) or lower WEBHOOKS_SEND_THREADS",
                soft,
                needed,
                threads,
            )
    return soft
