"""The systemd units the README gives for a supervised deployment are valid and restart
every process that exits."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "docs" / "deploy").glob("*.service"))
README = (ROOT / "README.md").read_text()


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_there_is_a_unit_for_each_kind_of_process():
    assert [unit.name for unit in UNITS] == [
        "webhooks-beat.service",
        "webhooks-web.service",
        "webhooks-worker@.service",
    ]
    for unit in UNITS:
        assert f"`{unit.name}`" in README


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_a_process_that_exits_is_started_again_within_seconds(unit):
    config = _unit(unit)
    assert config["Service"]["Restart"] == "always"
    assert float(config["Service"]["RestartSec"]) <= 2
    assert config["Unit"]["StartLimitIntervalSec"] == "0"  # never gives up


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_accepts_the_unit_and_its_command_runs_here(unit, tmp_path):
    """``systemd-analyze verify`` reads the unit as systemd would (unknown keys, bad values,
    a command that is not there), with the paths pointed at this checkout."""
    venv = Path(sys.executable).parent.parent
    text = (
        unit.read_text()
        .replace("/srv/webhooks/app/.venv", str(venv))
        .replace("/srv/webhooks/app", str(ROOT))
        .replace("/etc/webhooks/env", str(ROOT / ".env.example"))
        .replace("=webhooks\n", "=root\n")
    )
    name = unit.name.replace("@.", "@1.")
    (tmp_path / name).write_text(text)
    verified = subprocess.run(
        ["/usr/bin/systemd-analyze", "verify", str(tmp_path / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    problems = [line for line in verified.stderr.splitlines() if str(tmp_path) in line]
    assert problems == []
    command = re.search(r"ExecStart=(\S+)", text)
    assert command is not None
    assert Path(command.group(1)).is_file()


def test_the_web_and_the_workers_share_one_metrics_directory_that_is_theirs():
    """Without it each process writes its counters under the code's folder (var/metrics), which
    the service user may not be able to create (every scrape then fails) and nothing ever
    empties. The directory is on tmpfs, emptied at boot, and kept while any of them runs."""
    for name in ("webhooks-web.service", "webhooks-worker@.service"):
        service = _unit(ROOT / "docs" / "deploy" / name)["Service"]
        assert service["Environment"] == "PROMETHEUS_MULTIPROC_DIR=/run/webhooks-metrics", name
        assert service["RuntimeDirectory"] == "webhooks-metrics", name
        assert service["RuntimeDirectoryPreserve"] == "yes", name
