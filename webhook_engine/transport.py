"""The HTTP client that delivers webhooks; no database access.

What it guarantees, beyond plain ``requests``:

- one wall-clock deadline for the whole attempt (connect, TLS, sending, headers and body): a
  watchdog shuts the socket down when it passes, so a receiver dripping bytes cannot hold a worker;
- the response body is read up to a cap and the rest is never read;
- no redirects are followed, no proxy or ``.netrc`` settings are read from the environment;
- the destination is resolved once per connection, every resolved address must be allowed by the
  :class:`DestinationPolicy`, and the socket connects to a checked address (the host name is still
  used for TLS and ``Host``), so there is no window for DNS rebinding;
- every outcome is a :class:`TransportResult` with an :class:`ErrorKind`; it never raises for a
  network problem.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from .destinations import (
    DestinationBlocked,
    DestinationPolicy,
    HostNameInvalid,
    addresses_check,
)
from .errors import ErrorKind

logger = logging.getLogger(__name__)

USER_AGENT = "SchoolWebhooks/1.0 (+https://www.standardwebhooks.com/)"


class _Deadline:
    """Shuts down every socket of an attempt when its time is up (fired by ``_Watchdog``)."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.cancelled = False
        self.expires = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._owned: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    def start(self) -> None:
        _watchdog().watch(self)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for sock in self._owned:
                sock.close()
            self._owned.clear()

    def watch(self, sock: socket.socket | None, *, duplicate: bool = False) -> None:
        """Put a socket on the watch. ``duplicate`` watches a copy of it instead, which stays
        valid when the original is handed over (TLS wrapping detaches the original)."""
        if sock is None:
            return
        if duplicate:
            sock = sock.dup()
        with self._lock:
            if duplicate:
                self._owned.append(sock)
            if self.fired:
                _shutdown(sock)
            elif sock not in self._sockets:
                self._sockets.append(sock)

    def fire(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


class _Watchdog:
    """One thread per process that fires the deadlines of attempts in flight, earliest first.

    A timer thread per attempt cost a thread start and two context switches per request; this
    keeps the deadlines in a heap and sleeps until the earliest.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._condition = threading.Condition()
        self._counter = 0
        thread = threading.Thread(target=self._run, name="webhook-deadlines", daemon=True)
        thread.start()

    def watch(self, deadline: _Deadline) -> None:
        with self._condition:
            self._counter += 1
            heapq.heappush(self._heap, (deadline.expires, self._counter, deadline))
            if self._heap[0][2] is deadline:
                self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    if self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        continue
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._condition.wait(timeout)
                _expires, _number, due = heapq.heappop(self._heap)
            due.fire()


_watchdogs: dict[int, _Watchdog] = {}
_watchdogs_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    """This process's watchdog (a forked child starts its own: threads do not survive a fork)."""
    pid = os.getpid()
    watchdog = _watchdogs.get(pid)
    if watchdog is None:
        with _watchdogs_lock:
            watchdog = _watchdogs.get(pid)
            if watchdog is None:
                _watchdogs.clear()
                watchdog = _watchdogs[pid] = _Watchdog()
    return watchdog


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: it must not drop the TLS object under a
    # thread that is reading; closing the file descriptor's both directions unblocks the read.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# Threads start only as needed. A name whose servers never answer holds its thread until the
# system resolver gives up, long after its attempt ended: a small pool would let a couple of
# such webhooks hold up every other webhook's name resolution.
_resolvers = ThreadPoolExecutor(max_workers=256, thread_name_prefix="webhook-dns")


def _resolve_in_time(host: str, port: int, deadline: _Deadline | None) -> list[Any]:
    """``addresses_check`` within the attempt's remaining time (name resolution has no timeout
    of its own). Raises ``socket.gaierror`` when it does not answer in time."""
    policy = _context.policy
    if deadline is None:
        return addresses_check(host, port, policy)
    future = _resolvers.submit(addresses_check, host, port, policy)
    try:
        return future.result(timeout=deadline.remaining())
    except FutureTimeout as exc:
        future.cancel()  # still queued: nobody waits for its answer any more
        raise socket.gaierror(socket.EAI_AGAIN, "the name did not resolve in time") from exc


class _AttemptContext(threading.local):
    deadline: _Deadline | None = None
    policy: DestinationPolicy = DestinationPolicy()


_context = _AttemptContext()


class _GuardedConnectionMixin:
    """Resolve, check every address, connect to a checked one, and put the socket on the watch."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    sock: socket.socket | None
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        deadline = _context.deadline
        try:
            addresses = _resolve_in_time(self._dns_host, self.port, deadline)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        last_error: OSError | None = None
        for address in addresses:
            timeout = self.timeout
            if deadline is not None and isinstance(timeout, int | float):
                # What is left of the attempt's time, for each address in turn: a socket that
                # is still connecting is not on the deadline's watch.
                if deadline.remaining() <= 0:
                    raise ConnectTimeoutError(
                        self, f"Connection to {self.host} was not made in time."
                    )
                timeout = max(0.001, min(timeout, deadline.remaining()))
            try:
                sock = urllib3_connection.create_connection(
                    (str(address), self.port),
                    timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} ({address}) timed out."
                ) from exc
            except OSError as exc:
                last_error = exc
                continue
            if deadline is not None:
                # A copy: the TLS handshake that follows detaches this socket object.
                deadline.watch(sock, duplicate=True)
            return sock
        raise NewConnectionError(
            self,  # type: ignore[arg-type]
            f"Failed to establish a new connection: {last_error}",
        ) from last_error

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if _context.deadline is not None:
            _context.deadline.watch(self.sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        if _context.deadline is not None:
            _context.deadline.watch(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }


@dataclass(frozen=True)
class TransportResult:
    request_headers: dict[str, str]
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_truncated: bool = False
    duration_ms: int = 0
    error_kind: str = ErrorKind.NONE
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.error_kind == ErrorKind.NONE


class Transport:
    """A reusable, hardened HTTP client for one process (pooled connections, ``requests``).

    It sends through ``requests``' ``HTTPAdapter`` with a request prepared here, not through a
    ``Session``: a session would read proxy and ``.netrc`` settings from the environment, keep
    cookies and resolve redirects, none of which a webhook may do, and costs twice the CPU.
    """

    def __init__(
        self, *, policy: DestinationPolicy, pool_maxsize: int = 20, pool_connections: int = 100
    ) -> None:
        self.policy = policy
        self.adapter = GuardedAdapter(
            pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0
        )

    def close(self) -> None:
        self.adapter.close()

    def send(
        self,
        *,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout_seconds: float,
        max_body_bytes: int,
    ) -> TransportResult:
        """POST ``body`` to ``url`` and return what happened; never raises for network errors."""
        started = time.monotonic()
        request_headers = {
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Accept-Encoding": "identity",
            **headers,
        }
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            return TransportResult(
                request_headers=request_headers,
                error_kind=ErrorKind.INVALID_URL,
                error_message="The URL holds a user name or password; use basic authentication.",
            )
        # Every header is checked here once (``_post_prepare`` does not again); only a
        # webhook's custom header can fail: the product's own are always sendable.
        for name, value in request_headers.items():
            problem = _header_unsendable(name, value)
            if problem is not None:
                return TransportResult(
                    request_headers=request_headers,
                    error_kind=ErrorKind.CONFIGURATION,
                    error_message=f"The custom header {name!r} cannot be sent: {problem}",
                )
        try:
            prepared = _post_prepare(url, request_headers, body)
        except (requests.RequestException, ValueError) as exc:
            return TransportResult(
                request_headers=request_headers,
                error_kind=ErrorKind.INVALID_URL,
                error_message=f"The URL cannot be used: {exc}",
            )
        sent_headers = {name: str(value) for name, value in prepared.headers.items()}

        deadline = _Deadline(timeout_seconds)
        _context.deadline = deadline
        _context.policy = self.policy
        deadline.start()
        response = None
        try:
            response = self.adapter.send(
                prepared, timeout=(timeout_seconds, timeout_seconds), stream=True
            )
            content, truncated = _read_capped(response, max_body_bytes)
            deadline.cancel()  # from here on, ``fired`` says whether the deadline cut the answer
            if deadline.fired:
                # The watchdog shut the socket down while the answer was read: an answer whose
                # end is the connection's close then looks complete, but was cut off.
                raise TimeoutError("the deadline passed while the answer was read")
            status = response.status_code
            kind, message = _status_outcome(response)
            return TransportResult(
                request_headers=sent_headers,
                status=status,
                headers=dict(response.headers),
                body=content,
                body_truncated=truncated,
                duration_ms=_elapsed_ms(started),
                error_kind=kind,
                error_message=message,
            )
        except Exception as exc:
            kind, message = _exception_outcome(exc, deadline=deadline, seconds=timeout_seconds)
            return TransportResult(
                request_headers=sent_headers,
                status=response.status_code if response is not None else None,
                headers=dict(response.headers) if response is not None else {},
                duration_ms=_elapsed_ms(started),
                error_kind=kind,
                error_message=message,
            )
        finally:
            deadline.cancel()
            _context.deadline = None
            if response is not None:
                response.close()


def _header_unsendable(name: str, value: str) -> str | None:
    """Why no HTTP request can carry this header (a webhook's custom header stored before the
    checks on saving refused it), or None."""
    try:
        check_header_validity((name, value))
    except requests.exceptions.InvalidHeader as exc:
        return str(exc)
    if not name.isascii():
        return "its name has characters HTTP header names cannot carry (only ASCII)."
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "its value has characters HTTP headers cannot carry (only ISO-8859-1)."
    return None


def _post_prepare(url: str, headers: dict[str, str], body: bytes) -> PreparedRequest:
    """The request ``PreparedRequest.prepare`` makes of a POST of ``body`` with ``headers`` and
    no authentication, cookies or hooks, with the same checks of the URL (it raises what
    ``prepare`` raises); the headers were checked before (``_header_unsendable``). The URL's
    preparation (parsing, IDNA, quoting) is kept per URL: it was most of the CPU of preparing,
    and a webhook's URL is the same for each of its attempts."""
    prepared = PreparedRequest()
    prepared.method = "POST"
    prepared.url = _url_prepare(url)
    prepared.headers = CaseInsensitiveDict(headers)
    prepared.headers["Content-Length"] = str(len(body))
    prepared.body = body
    prepared.prepare_hooks(None)
    return prepared


@functools.lru_cache(maxsize=4096)
def _url_prepare(url: str) -> str:
    """``url`` as ``requests`` sends it; raises what ``PreparedRequest.prepare_url`` raises
    (a failure is not kept)."""
    prepared = PreparedRequest()
    prepared.prepare_url(url, None)
    return str(prepared.url)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _read_capped(response: requests.Response, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _status_outcome(response: requests.Response) -> tuple[str, str]:
    status = response.status_code
    if 200 <= status < 300:
        return ErrorKind.NONE, ""
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        where = f" to {location}" if location else ""
        return (
            ErrorKind.REDIRECT,
            f"The receiver answered {status} (a redirect{where}); redirects are not followed, "
            "so set the final URL on the webhook.",
        )
    reason = f" {response.reason}" if response.reason else ""
    return ErrorKind.HTTP_STATUS, f"The receiver answered {status}{reason}."


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (reason, args, cause, context), outermost first."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        linked = [getattr(current, "reason", None), current.__cause__, current.__context__]
        linked.extend(getattr(current, "args", ()))
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return seen


def _exception_outcome(exc: Exception, *, deadline: _Deadline, seconds: float) -> tuple[str, str]:
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, DestinationBlocked):
            return ErrorKind.BLOCKED, str(cause)
    if deadline.fired:
        return (
            ErrorKind.TIMEOUT,
            f"No complete response within {seconds:g} s; the attempt was stopped.",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ErrorKind.TIMEOUT, f"The connection was not accepted within {seconds:g} s."
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return ErrorKind.TIMEOUT, f"The receiver sent nothing for {seconds:g} s."
    if isinstance(exc, requests.exceptions.SSLError):
        return ErrorKind.TLS, f"The TLS handshake failed: {_innermost(causes)}"
    if any(isinstance(cause, NameResolutionError | socket.gaierror) for cause in causes):
        return ErrorKind.DNS, "The host name could not be resolved."
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return ErrorKind.INVALID_URL, f"The URL cannot be used: {exc}"
    if any(isinstance(cause, HostNameInvalid) for cause in causes):
        # The resolver cannot encode the name (an empty label, one over 63 characters): no
        # lookup is even possible, whatever the network does.
        return ErrorKind.INVALID_URL, "The URL cannot be used: its host is not a valid host name."
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return ErrorKind.CONNECTION, "The connection was refused: nothing listens at that address."
    if isinstance(exc, requests.exceptions.ConnectionError) and any(
        isinstance(cause, NewConnectionError) for cause in causes
    ):
        return ErrorKind.CONNECTION, f"The connection failed: {_innermost(causes)}"
    if isinstance(
        exc,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError
        | requests.exceptions.ConnectionError,
    ):
        return ErrorKind.RESPONSE, f"The receiver closed the connection or answered badly: {exc}"
    logger.exception("Unexpected error while delivering")
    return ErrorKind.INTERNAL, f"Unexpected error: {type(exc).__name__}: {exc}"


def _innermost(causes: list[BaseException]) -> str:
    return str(causes[-1]) if causes else ""
