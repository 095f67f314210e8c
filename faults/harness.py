"""The parts of a fault run: a private PostgreSQL and Redis, supervised workers and beat, a
receiver that verifies every signature, and a publisher.

Everything runs on 127.0.0.1 on ports of its own, so restarting the database or the broker
harms nothing else on the machine; everything is stopped at the end.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each event's data carries a label, ``faults-<scenario>-<number>``, that the receiver reads back.
EVENT_LABEL = re.compile(rb"faults-([a-z0-9]+-[0-9]+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- PostgreSQL and Redis of our own ----------------------------------------------------------


def _pg_bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in versions:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install PostgreSQL's server package.")
    return found


class PrivatePostgres:
    """A throwaway cluster (``initdb``), run as the ``postgres`` user when we are root."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.folder / "data"
        self.logfile = self.folder / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/faults"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run(
            [*prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _ctl(self, action: str, *extra: str) -> None:
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
            action,
            *extra,
        )

    def start(self) -> None:
        self._ctl("start", "-w")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode, "-w")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [_pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("the private PostgreSQL did not start")

    def create_database(self) -> None:
        subprocess.run(
            [
                _pg_bin("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "faults",
            ],
            check=True,
        )

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """A Redis that keeps nothing on disk: a restart loses every queued message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise SystemExit("the private Redis did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


# --- Workers and beat, restarted when they exit -----------------------------------------------


class Supervised:
    """A process started again (after a second) whenever it exits, as systemd's
    ``Restart=always`` does; ``kill`` SIGKILLs its whole process group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.logfile = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            if self.process is not None and self.process.poll() is not None:
                log(f"{self.name} exited ({self.process.returncode}); starting it again in 1 s")
                self._stop.wait(1.0)
                if not self._stop.is_set():
                    self.restarts += 1
                    self._start()

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        self._stop.set()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
                self.process.wait()
        self.logfile.close()


# --- A receiver that verifies every signature -------------------------------------------------


@dataclass
class Path_:
    secret: bytes = b""
    hang_seconds: float = 0.0
    # (webhook-id, arrival time, event label found in the body: "<scenario>-<number>")
    arrivals: list[tuple[str, float, str]] = field(default_factory=list)
    # When each request to a hanging path came in (its arrival is counted when it is answered).
    hung: list[float] = field(default_factory=list)


class Receiver:
    """Counts what arrives per path; a request whose ``v1`` signature does not verify is
    answered 401 and counted as bad (it is never a delivery)."""

    def __init__(self) -> None:
        self.paths: dict[str, Path_] = {}
        self.bad_signatures = 0
        self.cut_off = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    with receiver.lock:
                        receiver.cut_off += 1
                    return
                path = receiver.paths.get(self.path)
                if path is None:
                    self._answer(404)
                    return
                if path.hang_seconds:
                    with receiver.lock:
                        path.hung.append(time.time())
                    time.sleep(path.hang_seconds)
                msg_id = self.headers.get("webhook-id", "")
                signed = f"{msg_id}.{self.headers.get('webhook-timestamp', '')}.".encode() + body
                want = base64.b64encode(hmac.new(path.secret, signed, hashlib.sha256).digest())
                signatures = self.headers.get("webhook-signature", "").split()
                if not any(
                    hmac.compare_digest(s[3:].encode(), want)
                    for s in signatures
                    if s.startswith("v1,")
                ):
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self._answer(401)
                    return
                label = EVENT_LABEL.search(body)
                with receiver.lock:
                    path.arrivals.append(
                        (msg_id, time.time(), label.group(1).decode() if label else "")
                    )
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        # Two ports: two receiver hosts as the workers see them (``receiver_host``), one
        # receiver counting both.
        self.servers = [Server(("127.0.0.1", 0), Handler) for _ in range(2)]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def url(self, path: str, host: int = 0) -> str:
        """The URL of ``path`` on the receiver's first host, or on its ``host``-th."""
        return f"http://127.0.0.1:{self.servers[host].server_address[1]}{path}"

    def add(self, path: str, secret: str, hang_seconds: float = 0.0) -> None:
        raw = base64.b64decode(secret.split("_", 1)[1])
        self.paths[path] = Path_(secret=raw, hang_seconds=hang_seconds)

    def unique(self, paths: list[str] | None = None) -> int:
        with self.lock:
            return sum(
                len({arrival[0] for arrival in p.arrivals})
                for name, p in self.paths.items()
                if paths is None or name in paths
            )

    def total(self, paths: list[str] | None = None) -> int:
        with self.lock:
            return sum(
                len(p.arrivals) for name, p in self.paths.items() if paths is None or name in paths
            )

    def hung(self, paths: list[str]) -> list[float]:
        """When the requests to these hanging paths came in, in order."""
        with self.lock:
            return sorted(at for name in paths for at in self.paths[name].hung)

    def arrivals(self, paths: list[str] | None = None) -> list[tuple[str, float, str]]:
        with self.lock:
            return sorted(
                (
                    arrival
                    for name, p in self.paths.items()
                    if paths is None or name in paths
                    for arrival in p.arrivals
                ),
                key=lambda arrival: arrival[1],
            )

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()


# --- Publishing at a steady rate, through a fault -----------------------------------------------


class Publisher:
    """Publishes ``count`` events at ``rate`` per second from a thread; an event whose publish
    fails (the database is restarting) is published again with the same idempotency key until
    it is stored, as the platform would."""

    def __init__(self, publish: Callable[[int], None], count: int | None, rate: float) -> None:
        self.publish = publish
        self.count = count  # None: until stop()
        self.rate = rate
        self.published = 0
        self.retries = 0
        self.committed_at: dict[int, float] = {}  # event number -> when its publish committed
        self.done = threading.Event()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> int:
        """Stop publishing; return how many events were published."""
        self._stop.set()
        self.done.wait()
        return self.published

    def _run(self) -> None:
        start = time.monotonic()
        number = 0
        while (self.count is None or number < self.count) and not self._stop.is_set():
            due = start + number / self.rate
            time.sleep(max(0.0, due - time.monotonic()))
            while True:
                try:
                    self.publish(number)
                    self.committed_at[number] = time.time()
                    break
                except Exception:
                    self.retries += 1
                    close_connections()
                    time.sleep(0.2)
            self.published += 1
            number += 1
        self.done.set()


class CpuLimit:
    """This process and everything it starts from now on, held to ``cpus`` CPUs by a cgroup of
    its own (cgroup v2's ``cpu.max``, or v1's ``cpu`` controller): a repeatable stand-in for a
    slower machine, where what a fast one hides shows (the scenarios' latencies depend on how
    much CPU the workers, PostgreSQL and Redis share). Linux, and the right to make cgroups
    (root), or ``SystemExit`` with the reason."""

    _PERIOD = 100_000  # microseconds

    def __init__(self, cpus: float) -> None:
        if cpus <= 0:
            raise SystemExit("--cpus must be more than 0")
        quota = max(1000, int(cpus * self._PERIOD))
        name = f"webhooks-faults-{os.getpid()}"
        unified = Path("/sys/fs/cgroup/cgroup.controllers")
        try:
            if unified.exists():
                if "cpu" not in unified.read_text().split():
                    raise OSError("the cpu controller is not available in /sys/fs/cgroup")
                self.group = Path("/sys/fs/cgroup") / name
                self.group.mkdir()
                (self.group / "cpu.max").write_text(f"{quota} {self._PERIOD}")
            else:
                self.group = Path("/sys/fs/cgroup/cpu") / name
                self.group.mkdir()
                (self.group / "cpu.cfs_period_us").write_text(str(self._PERIOD))
                (self.group / "cpu.cfs_quota_us").write_text(str(quota))
            self.parent = self.group.parent
            (self.group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as error:
            raise SystemExit(
                f"--cpus needs a cgroup of its own and could not make one: {error}"
            ) from error
        log(f"held to {cpus:g} CPUs by the cgroup {self.group}")

    def release(self) -> None:
        """Leave the cgroup and remove it (every process started in it has stopped)."""
        with contextlib.suppress(OSError):
            (self.parent / "cgroup.procs").write_text(str(os.getpid()))
            self.group.rmdir()


def close_connections() -> None:
    from django.db import connections

    for connection in connections.all():
        with contextlib.suppress(Exception):
            connection.close()


def python() -> str:
    return sys.executable
