"""A real HTTP receiver on 127.0.0.1: a test scripts its answers; it records every request and
counts, per path, how many were in flight at once."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    # The listen backlog (socketserver's default is 5): a burst of concurrent attempts, such as
    # two webhooks' 8 hanging requests each with a fast one's, must not find it full.
    request_queue_size = 1024

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up mid-request is what the deadline and body-cap tests do on purpose.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay_seconds: float = 0.0
    # Send the status line and headers one byte at a time, this many seconds apart.
    drip_seconds: float = 0.0
    # Answer with the request itself, as httpbin or a request bin does: its path, headers and
    # body as JSON, and each request header again as an X-Echo-<name> answer header.
    echo: bool = False


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the request was read


def _echo(received: Received, reply: Reply) -> Reply:
    """The request as the answer (``Reply.echo``)."""
    body = json.dumps(
        {
            "url": received.path,
            "headers": received.headers,
            "body": received.body.decode("utf-8", errors="replace"),
        }
    ).encode()
    headers = {
        **reply.headers,
        **{f"X-Echo-{name}": value for name, value in received.headers.items()},
        "X-Echo-Url": received.path,
    }
    return Reply(status=reply.status, body=body, headers=headers)


class Receiver:
    """Answers each path from its own script of replies, then with its default reply.

    ``port``: listen there (a receiver that comes back where a dead one was); any free one by
    default. ``max_in_flight(path)``: the most requests to ``path`` it held at once, from
    reading a request to starting to write its answer."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._lock = threading.Condition()
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received = Received(
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                    at=time.time(),
                )
                reply = receiver._record(received)
                finished = False

                def finish() -> None:
                    nonlocal finished
                    if not finished:
                        finished = True
                        receiver._finished(received.path)

                try:
                    self._answer(received, reply, finish)
                finally:
                    finish()

            def _answer(self, received: Received, reply: Reply, finish: Callable[[], None]) -> None:
                if reply.echo:
                    reply = _echo(received, reply)
                if reply.delay_seconds:
                    time.sleep(reply.delay_seconds)
                head = f"HTTP/1.1 {reply.status} Reply\r\n"
                headers = {**reply.headers, "Content-Length": str(len(reply.body))}
                head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
                # No longer held once the answer starts on its way: the sender may have it (and
                # send its next request) before this thread runs again.
                finish()
                try:
                    if reply.drip_seconds:
                        for byte in head.encode():
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.drip_seconds)
                    else:
                        # One write: split writes stall on Nagle + delayed ACK.
                        self.wfile.write(head.encode() + reply.body)
                        self.wfile.flush()
                        return
                    self.wfile.write(reply.body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply, default: Reply | None = None) -> None:
        with self._lock:
            self._scripts[path] = deque(replies)
            if default is not None:
                self._defaults[path] = default

    def _record(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            count = self._in_flight[received.path] = self._in_flight.get(received.path, 0) + 1
            self._max_in_flight[received.path] = max(
                count, self._max_in_flight.get(received.path, 0)
            )
            self._lock.notify_all()
            script = self._scripts.get(received.path)
            if script:
                return script.popleft()
            return self._defaults.get(received.path, Reply())

    def _finished(self, path: str) -> None:
        with self._lock:
            self._in_flight[path] -= 1

    def max_in_flight(self, path: str) -> int:
        """The most requests to ``path`` held at once so far."""
        with self._lock:
            return self._max_in_flight.get(path, 0)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(
        self, count: int, *, path: str | None = None, timeout: float = 20.0
    ) -> list[Received]:
        """Block until ``count`` requests (for ``path``) arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                matching = [r for r in self.requests if path is None or r.path == path]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"Expected {count} requests to {path or 'any path'} within {timeout} s, "
                        f"got {len(matching)}"
                    )
                self._lock.wait(remaining)
