"""A sending process raises its limit of open files so that its send threads' connections fit:
with the usual soft limit of 1,024 and 512 threads busy on hanging receivers, it could not open
a connection to a healthy one. Each case runs in a process of its own, with the limits set as
a service manager would set them before it starts."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

_SCRIPT = """
import json, logging, resource, sys
import django
django.setup()
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from django.conf import settings
soft, hard = {limits}
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
{call}
print(json.dumps(list(resource.getrlimit(resource.RLIMIT_NOFILE))))
"""


def _run(limits: tuple[int, int], call: str) -> tuple[list[int], str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    finished = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(limits=limits, call=call)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(finished.stdout.strip().splitlines()[-1]), finished.stderr


def _hard() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def test_a_low_soft_limit_is_raised_to_fit_the_send_threads():
    hard = _hard()
    assert hard == resource.RLIM_INFINITY or hard >= 2 * 512 + 256, "this machine's hard limit"
    limits, errors = _run(
        (256, hard),
        "from deliveries.services.config import open_files_fit\nopen_files_fit(512)",
    )
    assert limits == [2 * 512 + 256, hard]
    assert "WARNING" not in errors


def test_a_hard_limit_too_low_is_used_whole_and_named_in_a_warning():
    limits, errors = _run(
        (256, 600),
        "from deliveries.services.config import open_files_fit\nopen_files_fit(512)",
    )
    assert limits == [600, 600]
    assert "may open 600 files (its hard limit), fewer than the 1280" in errors
    assert "LimitNOFILE" in errors
    assert "WEBHOOKS_SEND_THREADS=512" in errors


def test_a_soft_limit_already_high_enough_is_left_alone():
    hard = _hard()
    soft = 5000 if hard == resource.RLIM_INFINITY else min(5000, hard)
    limits, errors = _run(
        (soft, hard),
        "from deliveries.services.config import open_files_fit\nopen_files_fit(512)",
    )
    assert limits == [soft, hard]
    assert errors == ""


def test_the_process_that_sends_fits_its_limit_when_its_dispatcher_starts():
    """The worker's own path: the first delivery a process sends starts its dispatcher."""
    hard = _hard()
    limits, _errors = _run(
        (256, hard),
        "from deliveries.services.dispatch import dispatcher\n"
        "assert dispatcher().slots == settings.WEBHOOKS_SEND_THREADS == 512",
    )
    assert limits == [2 * 512 + 256, hard]
