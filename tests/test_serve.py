"""`make run`'s supervisor: whether the web server's port can be used, and what a second start,
another data directory or Ctrl-C during the start do to real supervisors."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import ROOT
from webhooks_project.serve import Child, _listen_problem, _stop


def test_a_port_whose_last_connections_wait_out_time_wait_is_free_to_listen_on_again():
    """Stopping `make run` leaves the demo deliveries' connections to the web server in
    TIME-WAIT for a minute; starting it again at once must not call the port busy."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as web servers listen
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME-WAIT
        client.recv(1)
        client.close()
    assert _listen_problem("127.0.0.1", port) is None


def test_a_port_something_listens_on_is_busy():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _listen_problem("127.0.0.1", port) == (
            f"127.0.0.1:{port} is in use; set WEBHOOKS_PORT to another port."
        )


def test_a_host_that_is_no_address_of_this_machine_is_named_as_such_not_as_a_busy_port():
    """WEBHOOKS_HOST set to another machine's address (or a mistyped one): the port is not
    what is wrong, and saying it is in use sends the reader after the wrong setting."""
    assert _listen_problem("192.0.2.1", _free_port()) == (
        "192.0.2.1 is not an address of this machine; set WEBHOOKS_HOST to one "
        "(127.0.0.1, or 0.0.0.0 for every address)."
    )


@pytest.mark.parametrize("port", ["eighty", "0", "70000", "-1"])
def test_a_port_setting_that_is_no_port_number_is_refused_with_a_message(tmp_path, port):
    run = _serve_until_it_exits(WEBHOOKS_DATA_DIR=str(tmp_path / "data"), WEBHOOKS_PORT=port)

    assert run.returncode == 1
    assert run.stderr == f"WEBHOOKS_PORT must be a port number (1 to 65535), not {port!r}.\n"
    assert not (tmp_path / "data").exists()  # refused before anything was written


def test_a_data_directory_that_cannot_be_made_is_refused_with_a_message(tmp_path):
    """WEBHOOKS_DATA_DIR naming a file (or a folder this user may not write in)."""
    taken = tmp_path / "a-file"
    taken.write_text("")
    run = _serve_until_it_exits(WEBHOOKS_DATA_DIR=str(taken), WEBHOOKS_PORT=str(_free_port()))

    assert run.returncode == 1
    assert run.stderr == (
        f"The data directory {taken} cannot be made (File exists); "
        "set WEBHOOKS_DATA_DIR to a folder this user may write in.\n"
    )


def test_ctrl_c_stops_the_web_server_after_the_worker_has_finished_its_deliveries(tmp_path):
    """The web server serves the demo receiver: stopped with the worker, it refused the
    deliveries the worker was finishing, and the demo webhooks showed failures after a Ctrl-C
    in the middle of work."""
    stopped = tmp_path / "stopped"

    def process(name: str, seconds_to_finish: float) -> Child:
        code = (
            "import signal, sys, time\n"
            "def stop(*args):\n"
            f"    time.sleep({seconds_to_finish})\n"
            f"    open({str(stopped)!r}, 'a').write({name!r} + '\\n')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n"
        )
        return Child(name, [sys.executable, "-c", code])

    children = [process("web", 0), process("worker", 1), process("beat", 0)]
    time.sleep(1)  # their SIGTERM handlers are in place

    _stop(children)

    assert stopped.read_text().splitlines()[-1] == "web"
    assert sorted(stopped.read_text().splitlines()) == ["beat", "web", "worker"]


# --- The supervisor itself, as `make run` starts it ------------------------------------------


def _serve_environment(**settings: str) -> dict[str, str]:
    """This environment without the test run's own settings (the embedded default), plus
    ``settings``."""
    ours = ("DATABASE_", "CELERY_", "WEBHOOKS_", "DJANGO_", "PROMETHEUS_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(ours)}
    env.update(settings)
    return env


def _serve_until_it_exits(**settings: str) -> subprocess.CompletedProcess[str]:
    """``python -m webhooks_project.serve`` with ``settings``, when it is expected to refuse
    them and exit at once."""
    return subprocess.run(
        [sys.executable, "-m", "webhooks_project.serve"],
        cwd=ROOT,
        env=_serve_environment(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Supervisor:
    """``python -m webhooks_project.serve`` on the embedded default, with its own data directory
    and port, its output collected; ``stop()`` ends it as Ctrl-C would, then anything it left."""

    def __init__(self, data: Path, port: int, **settings: str) -> None:
        self.data = data
        env = _serve_environment(WEBHOOKS_DATA_DIR=str(data), WEBHOOKS_PORT=str(port), **settings)
        # Marks this supervisor's processes (its children inherit it), to find what it left.
        self.mark = f"WEBHOOKS_TEST_SUPERVISOR={uuid.uuid4().hex}"
        env.update([self.mark.split("=")])
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webhooks_project.serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(
            target=lambda: self.output.extend(self.process.stdout), daemon=True
        ).start()

    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, marker: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            assert self.process.poll() is None, f"it exited:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {marker!r}:\n{self.text()[-3000:]}"
            time.sleep(0.2)

    def processes(self) -> list[int]:
        """This supervisor's processes: itself and its children."""
        found = []
        needle = f"{self.mark}\0".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if needle in (entry / "environ").read_bytes():
                        found.append(int(entry.name))
        return found

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)  # the terminal's Ctrl-C
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(60)
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.process.wait()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    supervisor = Supervisor(tmp_path_factory.mktemp("make-run") / "data", _free_port())
    supervisor.wait_for("The admin is at")
    yield supervisor
    supervisor.stop()


@pytest.mark.integration
def test_a_second_start_on_the_same_data_directory_leaves_the_running_one_alone(running):
    """Started twice in one folder, the second must not empty the first one's metric files (its
    counters would be lost until it restarts), nor run a second worker and beat on its files."""
    metrics = running.data / "metrics"
    deadline = time.monotonic() + 60
    while not list(metrics.glob("counter_*.db")) and time.monotonic() < deadline:
        time.sleep(0.5)  # the demo deliveries' counters
    files = list(metrics.glob("*.db"))
    assert files, running.text()[-3000:]
    port = _port_of(running)

    for second_port in (port, _free_port()):
        second = Supervisor(running.data, second_port)
        try:
            assert second.process.wait(60) != 0
        finally:
            second.stop()
        assert set(files) <= set(metrics.glob("*.db")), second.text()  # none removed
        assert "already running" in second.text(), second.text()
    assert running.process.poll() is None


def _port_of(supervisor: Supervisor) -> int:
    match = re.search(r"The admin is at http://127\.0\.0\.1:(\d+)/", supervisor.text())
    assert match, supervisor.text()[-3000:]
    return int(match.group(1))


@pytest.mark.integration
def test_a_start_on_another_data_directory_runs_its_own_beat(running, tmp_path):
    """Everything a run keeps is under its WEBHOOKS_DATA_DIR, beat's pidfile too: a second run
    with a data directory of its own starts its beat instead of finding the first one's."""
    other = Supervisor(tmp_path / "data", _free_port())
    try:
        other.wait_for("The admin is at")
        other.wait_for("beat: Starting", timeout=60)
        time.sleep(3)
        assert "beat exited" not in other.text(), other.text()[-3000:]
        assert (tmp_path / "data" / "beat.pid").exists()
    finally:
        assert other.stop() == 0
    assert other.processes() == []


@pytest.mark.integration
def test_ctrl_c_while_it_starts_stops_it_without_a_traceback(tmp_path):
    """Ctrl-C during the migrations (or the demo data) stops the start quietly: nothing left
    running, no KeyboardInterrupt traceback from the supervisor or the step it was running."""
    starting = Supervisor(tmp_path / "data", _free_port())
    starting.wait_for("Starting with")
    time.sleep(1)  # migrating the fresh database
    assert starting.stop() == 0, starting.text()[-3000:]
    assert "Traceback" not in starting.text(), starting.text()[-3000:]
    assert starting.processes() == []


@pytest.mark.integration
def test_listening_on_every_address_the_demo_receiver_is_reached_on_loopback(tmp_path):
    """WEBHOOKS_HOST=0.0.0.0 (the admin reachable from outside a VM or a container): the demo
    webhooks and the printed address are on loopback, not 0.0.0.0, which no webhook may use."""
    port = _free_port()
    everywhere = Supervisor(tmp_path / "data", port, WEBHOOKS_HOST="0.0.0.0")
    try:
        everywhere.wait_for(f"The admin is at http://127.0.0.1:{port}/admin/")
        everywhere.wait_for('"POST /demo/receiver/ HTTP/1.1" 200', timeout=60)
    finally:
        assert everywhere.stop() == 0
    assert "Traceback" not in everywhere.text(), everywhere.text()[-3000:]


@pytest.mark.integration
def test_a_supervisor_killed_outright_takes_its_children_with_it(tmp_path):
    """SIGKILL (the OOM killer, `kill -9`) gives the supervisor no chance to stop anything:
    its children must not run on without it, holding the port and the data directory."""
    supervisor = Supervisor(tmp_path / "data", _free_port())
    try:
        supervisor.wait_for("The admin is at")
        os.kill(supervisor.process.pid, signal.SIGKILL)
        supervisor.process.wait()
        deadline = time.monotonic() + 45  # the worker's warm shutdown
        while supervisor.processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert supervisor.processes() == [], supervisor.text()[-3000:]
    finally:
        supervisor.stop()


@pytest.mark.integration
def test_a_data_directory_deleted_while_it_runs_stops_it_with_a_message(tmp_path):
    """`rm -rf var` (or `make clean`) while `make run` runs takes its database and broker: the
    three processes would go on against an empty database the next query creates, failing every
    page and task, and the lock would no longer keep a second start out. It stops instead, and
    says why."""
    data = tmp_path / "data"
    supervisor = Supervisor(data, _free_port())
    try:
        supervisor.wait_for("The admin is at")
        shutil.rmtree(data, ignore_errors=True)  # the worker may be writing in it
        assert supervisor.process.wait(60) == 1, supervisor.text()[-3000:]
    finally:
        supervisor.stop()
    assert (
        f"The data directory {data} was deleted while `make run` ran, and its database and "
        "broker with it: stopping. `make run` starts afresh."
    ) in supervisor.text()
    assert "Traceback" not in supervisor.text(), supervisor.text()[-3000:]
    assert supervisor.processes() == []
