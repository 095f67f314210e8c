"""`make run` from a fresh clone, with no database or broker configured, serves the admin with
demo deliveries that reached the demo receiver."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _clean_env(port: int) -> dict[str, str]:
    """A newcomer's environment: no DATABASE_URL, broker, queue or product settings."""
    ours = ("DATABASE_", "CELERY_", "WEBHOOKS_", "DJANGO_", "PROMETHEUS_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(ours)}
    env["WEBHOOKS_PORT"] = str(port)
    return env


def test_make_run_from_a_fresh_clone_serves_the_admin_with_delivered_demo_events(tmp_path: Path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = _free_port()
    output: list[str] = []
    process = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=_clean_env(port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    try:
        login = _wait_for_login(output, process, timeout=240)
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        page = session.get(f"{base}/admin/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        session.post(
            f"{base}/admin/login/",
            data={"username": login[0], "password": login[1], "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/admin/login/"},
            timeout=10,
        )
        deadline = time.monotonic() + 60
        while True:
            listing = session.get(
                f"{base}/admin/deliveries/delivery/?status__exact=delivered", timeout=10
            )
            assert listing.status_code == 200, "".join(output)[-3000:]
            assert "Log in" not in listing.text, "".join(output)[-3000:]
            delivered = listing.text.count("Demo receiver")
            if delivered >= 3 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert delivered >= 3, "".join(output)[-3000:]
        assert "student.signed" in listing.text
        assert (clone / "var" / "db.sqlite3").exists()  # the embedded default was used

        # A worker that dies is started again by the supervisor.
        [worker] = [pid for pid in _processes_in(clone) if _is_worker_parent(pid)]
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            "worker exited with -9; starting it again" in line for line in output
        ):
            time.sleep(0.5)
        while time.monotonic() < deadline and not [
            pid for pid in _processes_in(clone) if _is_worker_parent(pid) and pid != worker
        ]:
            time.sleep(0.5)
        restarted = [pid for pid in _processes_in(clone) if _is_worker_parent(pid)]
        assert restarted, "".join(output)[-3000:]
        assert worker not in restarted
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # make and the supervisor, as Ctrl-C would
        deadline = time.monotonic() + 60  # the supervisor gives in-flight work 30 s
        while (leftovers := _processes_in(clone)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert leftovers == [], (
        "web, worker or beat outlived the supervisor:\n" + "".join(output)[-3000:]
    )
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def _is_worker_parent(pid: int) -> bool:
    """The Celery worker's main process (not one of its pool's children)."""
    with contextlib.suppress(OSError):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        parent_command = Path(f"/proc/{parent}/cmdline").read_bytes()
        return (
            b"worker" in command
            and b"celery" in b" ".join(command)
            and b"worker" not in (parent_command)
        )
    return False


def _processes_in(folder: Path) -> list[int]:
    """PIDs of processes whose working directory is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                found.append(int(entry.name))
    return found


def _wait_for_login(
    output: list[str], process: subprocess.Popen, timeout: float
) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(output):
            match = re.search(r"Log in at \S+ as (\S+) / (\S+)", line)
            if match:
                return match.group(1), match.group(2)
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError("make run printed no login:\n" + "".join(output)[-3000:])
