"""Real worker, beat and server processes for integration tests, stopped by PID when done."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


class ManagedProcess:
    """A child process with its output in a log file; ``stop()`` ends it and its children."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:8]}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._terminated = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, marker: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not print {marker!r}:\n{self.log()[-4000:]}")

    def terminate(self) -> None:
        """SIGTERM (a warm shutdown), without waiting: ``stop()`` waits."""
        if self.process.poll() is None and not self._terminated:
            os.kill(self.pid, signal.SIGTERM)
            self._terminated = True

    def stop(self, grace_seconds: float = 15.0) -> None:
        if self.process.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace_seconds)
        # Whatever the process left behind (prefork children) goes with its session.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crashed host would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


def process_env(**overrides: str) -> dict[str, str]:
    """Environment for a child that shares this test run's database, broker and queue."""
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webhooks_project.settings",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        ),
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "WEBHOOKS_ALLOWED_NETWORKS": ",".join(settings.WEBHOOKS_ALLOWED_NETWORKS),
        "WEBHOOKS_RETRY_BASE_SECONDS": str(settings.WEBHOOKS_RETRY_BASE_SECONDS),
        "WEBHOOKS_RETRY_MAX_ATTEMPTS": str(settings.WEBHOOKS_RETRY_MAX_ATTEMPTS),
        "WEBHOOKS_RETRY_WINDOW_SECONDS": str(settings.WEBHOOKS_RETRY_WINDOW_SECONDS),
        "WEBHOOKS_RETRY_JITTER": str(settings.WEBHOOKS_RETRY_JITTER),
        "WEBHOOKS_TIMEOUT_SECONDS": str(settings.WEBHOOKS_TIMEOUT_SECONDS),
        "WEBHOOKS_CIRCUIT_FAILURES": str(settings.WEBHOOKS_CIRCUIT_FAILURES),
        "WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS": str(settings.WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def start_worker(log_dir: Path, *, concurrency: int = 2, **env: str) -> ManagedProcess:
    return start_workers(log_dir, 1, concurrency=concurrency, **env)[0]


def start_workers(
    log_dir: Path, count: int, *, concurrency: int = 2, **env: str
) -> list[ManagedProcess]:
    """``count`` worker processes on the same queue, each under a hostname of its own (``-n``),
    as on as many hosts; started together, returned once each is ready."""
    environment = process_env(**env)
    workers = [
        ManagedProcess(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "webhooks_project",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "--pool=prefork",
                f"--queues={environment['CELERY_TASK_DEFAULT_QUEUE']}",
                f"--hostname=test-{uuid.uuid4().hex[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            environment,
            log_dir,
        )
        for _ in range(count)
    ]
    try:
        for worker in workers:
            worker.wait_for_log(" ready.", timeout=60)
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def start_beat(log_dir: Path, **env: str) -> ManagedProcess:
    beat = ManagedProcess(
        "beat",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "webhooks_project",
            "beat",
            "--loglevel=INFO",
            f"--pidfile={log_dir / f'beat-{uuid.uuid4().hex[:8]}.pid'}",
        ],
        process_env(**env),
        log_dir,
    )
    beat.wait_for_log("beat: Starting", timeout=60)
    return beat
