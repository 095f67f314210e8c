"""``make run``: migrate, start web + worker + beat, load demo data, print the admin URL and login.

Reads ``.env`` first. With no ``DATABASE_URL`` / ``CELERY_BROKER_URL`` the embedded default is used
(SQLite and a filesystem broker under ``var/``). Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stop
all three processes gracefully: in-flight deliveries get a grace period before anything is killed.
A process that exits on its own is started again (after 1 s, then 2, 4, ... up to 30 s while it
keeps exiting). Everything a run keeps (database, broker, metric files, beat's pidfile) is under
``WEBHOOKS_DATA_DIR``, which one run at a time may use: a second start on it is refused.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 30.0
RESTART_DELAY_MAX_SECONDS = 30.0
# Open files whose locks this process holds until it exits.
_locks_held: list[IO[str]] = []


def _stop_with_the_supervisor() -> None:
    """Run in a child before its command (Linux): SIGTERM it when the supervisor ends, however
    it ends. Otherwise a supervisor killed outright (``kill -9``, the OOM killer) would leave
    the three processes running without it, holding the port and the data directory."""
    if _prctl is None:
        return
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != _SUPERVISOR:  # it ended before the request was made
        os._exit(1)


# Looked up once, here: the function above runs between fork and exec, where little is safe.
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None).prctl if sys.platform == "linux" else None
_SUPERVISOR = os.getpid()


class Child:
    """One supervised process; ``restart`` starts it again after it exited."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        self.command = command
        self.restarts = 0
        self.start()

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # terminal signals reach the supervisor only
            preexec_fn=_stop_with_the_supervisor,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self) -> None:
        for line in self.process.stdout or ():
            sys.stdout.write(f"{self.name:>6} | {line}")
            sys.stdout.flush()

    def running(self) -> bool:
        return self.process.poll() is None

    def restart_delay(self) -> float:
        """Seconds to wait before starting it again: 1, 2, 4, ... up to 30 while it keeps
        exiting, 1 again once it had run for a minute."""
        if time.monotonic() - self.started_at > 60:
            self.restarts = 0
        delay = min(RESTART_DELAY_MAX_SECONDS, 2.0**self.restarts)
        self.restarts += 1
        return delay

    def terminate(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.running():
            os.killpg(self.process.pid, signal.SIGKILL)


def _listen_problem(host: str, port: int) -> str | None:
    """Why the web server could not listen on the port, as a message for the person who ran
    ``make run`` (None when it can). As servers do, the probe reuses an address whose closed
    connections still wait out TIME-WAIT (a minute after the last run stopped); a port
    something listens on stays refused."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is in use; set WEBHOOKS_PORT to another port."
            if exc.errno == errno.EACCES:
                return (
                    f"Listening on port {port} needs more rights than this user has; "
                    "set WEBHOOKS_PORT to a port above 1023."
                )
            if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
                return (
                    f"{host} is not an address of this machine; set WEBHOOKS_HOST to one "
                    "(127.0.0.1, or 0.0.0.0 for every address)."
                )
            return f"Cannot listen on {host}:{port} ({exc.strerror or exc})."
    return None


def _port_setting() -> int:
    """``WEBHOOKS_PORT``, refused with a message when it is no port number."""
    text = os.environ.get("WEBHOOKS_PORT") or "8000"
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise SystemExit(f"WEBHOOKS_PORT must be a port number (1 to 65535), not {text!r}.")
    return int(text)


def _wait_for_port(
    host: str, port: int, timeout: float, web: Child, stop_signals: list[int]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop_signals:
        if not web.running():
            raise SystemExit("The web server exited; see its output above.")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    if not stop_signals:
        raise SystemExit(f"The web server did not start listening on {host}:{port}.")


def _step(command: list[str], stop_signals: list[int]) -> bool:
    """Run one step of the start (migrate, the demo data) to its end: True when it succeeded,
    False when a stop was asked meanwhile (the step is ended with SIGTERM). Like the children,
    it runs in a session of its own, so Ctrl-C reaches the supervisor only and the step does not
    print a KeyboardInterrupt's traceback."""
    process = subprocess.Popen(
        command, cwd=ROOT, start_new_session=True, preexec_fn=_stop_with_the_supervisor
    )
    while process.poll() is None:
        if stop_signals:
            process.terminate()
            process.wait()
            return False
        time.sleep(0.1)
    if stop_signals:
        return False
    if process.returncode != 0:
        raise SystemExit(f"`manage.py {command[2]}` failed; see its output above.")
    return True


def _data_directory() -> Path:
    """``WEBHOOKS_DATA_DIR`` as the three processes read it (relative to the repository, where
    they run), created if need be."""
    data = ROOT / (os.environ.get("WEBHOOKS_DATA_DIR") or "var")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(
            f"The data directory {data} cannot be made ({exc.strerror or exc}); "
            "set WEBHOOKS_DATA_DIR to a folder this user may write in."
        ) from None
    return data


def _data_directory_lock(data: Path) -> IO[str]:
    """Refuse to start a second supervisor on the same data directory: it would share the
    first one's database and broker files, empty its metric files and start a second beat.
    The lock is held until this process exits (the file stays; the lock goes with the process,
    however it ends)."""
    lock = (data / "serve.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        raise SystemExit(
            f"`make run` is already running on {data} (process {holder}); stop it first, "
            "or give this one another WEBHOOKS_DATA_DIR."
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _locks_held.append(lock)
    return lock


def _data_directory_gone(data: Path, lock: IO[str]) -> bool:
    """Whether the data directory was deleted (or replaced) since this run took its lock: its
    database and broker files went with it, and the lock no longer keeps a second start out."""
    held = os.fstat(lock.fileno())
    try:
        found = (data / "serve.lock").stat()
    except OSError:
        return True
    return (found.st_dev, found.st_ino) != (held.st_dev, held.st_ino)


def _metrics_directory_empty(data: Path) -> None:
    """Start the counters from zero: the metric files of earlier runs are removed (only those),
    and the three processes are told the one directory they share."""
    directory = ROOT / (os.environ.get("PROMETHEUS_MULTIPROC_DIR") or data / "metrics")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _stop(children: list[Child]) -> None:
    """Stop the worker and beat, giving in-flight deliveries up to ``GRACE_SECONDS`` to finish,
    then the web server: it serves the demo receiver, which those deliveries may be posting to
    (stopped with them, it refused them and the demo webhooks showed failures after every
    Ctrl-C in the middle of work). Whatever is still running at the end is killed."""
    deadline = time.monotonic() + GRACE_SECONDS
    web = [child for child in children if child.name == "web"]
    for group in ([child for child in children if child not in web], web):
        for child in group:
            child.terminate()
        for child in group:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    for child in children:
        child.kill()  # prefork children left behind by a killed parent


def main() -> None:
    load_dotenv(ROOT / ".env")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    # The demo subscription points at the demo receiver this server itself serves on loopback.
    os.environ.setdefault("WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    host = os.environ.get("WEBHOOKS_HOST", "127.0.0.1")
    port = _port_setting()
    # Where this machine reaches the server: a server listening on every address (0.0.0.0,
    # to be reached from outside a VM or a container) is reached on loopback; 0.0.0.0 itself
    # is no address a webhook may be sent to.
    local = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104
    base_url = f"http://{local}:{port}"
    python = sys.executable
    manage = [python, str(ROOT / "manage.py")]
    data = _data_directory()
    lock = _data_directory_lock(data)
    problem = _listen_problem(host, port)
    if problem:
        raise SystemExit(problem)
    _metrics_directory_empty(data)
    database = "PostgreSQL" if os.environ.get("DATABASE_URL") else "embedded SQLite"
    broker = "Redis" if os.environ.get("CELERY_BROKER_URL") else "embedded filesystem broker"
    print(f"Starting with {database} and {broker}; data in {data}.", flush=True)
    stop_signals: list[int] = []
    exit_code = 0

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # Only note it. A handler runs between two bytecodes of the main thread, which may be
        # holding a lock at that moment (a threading.Event's, while it waits on it); taking
        # that lock here would hang the supervisor for good.
        stop_signals.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)

    if not _step([*manage, "migrate", "--noinput"], stop_signals):
        sys.exit(0)
    children = [
        Child("web", [*manage, "runserver", "--noreload", f"{host}:{port}"]),
        Child(
            "worker",
            [python, "-m", "celery", "-A", "webhooks_project", "worker", "-l", "INFO", "-c", "2"],
        ),
        Child(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "webhooks_project",
                "beat",
                "-l",
                "INFO",
                f"--pidfile={data / 'beat.pid'}",
            ],
        ),
    ]

    try:
        _wait_for_port(local, port, 60, children[0], stop_signals)
        if stop_signals or not _step([*manage, "demo_setup", "--base-url", base_url], stop_signals):
            return
        print(f"\nThe admin is at {base_url}/admin/ (Ctrl-C stops everything).\n", flush=True)
        restart_at: dict[str, float] = {}
        while not stop_signals:
            if _data_directory_gone(data, lock):
                print(
                    f"\nThe data directory {data} was deleted while `make run` ran, and its "
                    "database and broker with it: stopping. `make run` starts afresh.",
                    flush=True,
                )
                exit_code = 1
                break
            # A process that exits (a crash, a worker losing its broker for good) is started
            # again, with a growing delay while it keeps exiting.
            for child in children:
                if child.running() or stop_signals:
                    continue
                if child.name not in restart_at:
                    delay = child.restart_delay()
                    restart_at[child.name] = time.monotonic() + delay
                    print(
                        f"{child.name} exited with {child.process.returncode}; "
                        f"starting it again in {delay:g} s.",
                        flush=True,
                    )
                elif time.monotonic() >= restart_at[child.name]:
                    del restart_at[child.name]
                    child.start()
            time.sleep(0.5)
    finally:
        _stop(children)
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
