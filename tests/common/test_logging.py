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


def _through(logger_name, message, *args):
    """What a logger configured by the settings lets through of one INFO record."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        logger.info(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_beats_frequent_ticks_are_logged_once_then_only_when_they_fail():
    """`make run` wrote about five lines a second for as long as it ran (beat sending the
    sweeper and the scheduled events' tick, the worker receiving each and its success), and its
    login scrolled out of sight within a second. Now each is said once, then only what fails or
    is not a routine tick."""
    from celery.app.trace import LOG_RECEIVED, LOG_RETRY, LOG_SUCCESS

    def tick(name, number):
        return {"id": f"t-{number}", "name": name, "runtime": 0.01, "return_value": None}

    said = []
    for number in range(3):
        said.append(
            _through(
                "celery.beat",
                "Scheduler: Sending due task %s (%s)",
                "deliveries-sweep",
                "deliveries.sweep",
            )
        )
        said.append(
            _through("celery.worker.strategy", LOG_RECEIVED, tick("deliveries.sweep", number))
        )
        said.append(_through("celery.app.trace", LOG_SUCCESS, tick("deliveries.sweep", number)))
    said = [line for line in said if line]

    assert said == [
        "Scheduler: Sending due task deliveries-sweep (deliveries.sweep)\n",
        "Task deliveries.sweep[t-0] received\n",
        "Task deliveries.sweep[t-0] succeeded in 0.01s: None\n",
    ]
    retry = {**tick("deliveries.sweep", 4), "exc": "OperationalError()"}
    assert _through("celery.app.trace", LOG_RETRY, retry)
    for _ in range(2):  # not a routine tick: every time
        assert _through("celery.app.trace", LOG_SUCCESS, tick("deliveries.prune", 5))
        assert _through("celery.worker.strategy", LOG_RECEIVED, tick("deliveries.deliver", 6))
