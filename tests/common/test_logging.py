"""WEBHOOKS_LOG_FORMAT: the JSON formatter, and the setting that chooses it."""

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from common.logging import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]


def _log(*args, **kwargs):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(*args, **kwargs)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_record_is_one_line_of_json_with_its_extra_fields():
    line = _log(
        "Attempt %s of %s", 2, "d-1", extra={"delivery_id": "d-1", "attempt": 2, "status": None}
    )

    assert line.count("\n") == 1
    assert line.endswith("\n")
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "delivery_id", "attempt", "status"}
    assert entry["time"].endswith("+00:00")
    assert len(entry["time"]) == len("2026-12-03T18:01:58.016+00:00")
    assert (entry["level"], entry["logger"]) == ("WARNING", "tests.json")
    assert entry["message"] == "Attempt 2 of d-1"
    assert (entry["delivery_id"], entry["attempt"], entry["status"]) == ("d-1", 2, None)


def test_an_exception_is_kept_and_values_json_cannot_hold_are_written_as_text():
    try:
        raise ValueError("école fermée")
    except ValueError:
        line = _log("Failed", exc_info=True, extra={"path": Path("var/x"), "ids": {1}})

    entry = json.loads(line)
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: école fermée")
    assert (entry["path"], entry["ids"]) == ("var/x", "{1}")


def _settings_with(**env):
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import webhooks_project.settings as s; print(s.LOGGING['handlers'])",
        ],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DJANGO_DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_log_format_setting_chooses_the_formatter_and_refuses_anything_else():
    plain = _settings_with()
    json_format = _settings_with(WEBHOOKS_LOG_FORMAT="JSON")
    unknown = _settings_with(WEBHOOKS_LOG_FORMAT="xml")

    assert "'formatter': 'plain'" in plain.stdout
    assert "'formatter': 'json'" in json_format.stdout
    assert unknown.returncode == 1
    assert "WEBHOOKS_LOG_FORMAT='xml' is not a log format (use plain or json)." in unknown.stderr


def test_metrics_settings_refuse_a_short_token_and_a_network_that_is_not_one():
    short = _settings_with(WEBHOOKS_METRICS_TOKEN="short")
    bad_network = _settings_with(WEBHOOKS_METRICS_ALLOWED_NETWORKS="10.0.0.0/8,intranet")

    assert "WEBHOOKS_METRICS_TOKEN must be 16 characters or more." in short.stderr
    assert (
        "WEBHOOKS_METRICS_ALLOWED_NETWORKS: 'intranet' is not a network (use CIDRs)."
        in bad_network.stderr
    )
