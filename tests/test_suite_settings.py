"""The suite's own settings (``tests/settings.py``): what each of its processes gets."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _settings_import(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_test_process_past_redis_last_database_stops_with_the_way_out():
    """The fifth xdist process from database 12 would use 16, which Redis does not have."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CELERY_BROKER_URL", "WEBHOOKS_TEST_DEFAULTED", "WEBHOOKS_TEST_DEFAULTS_FOR")
    }
    env.update(PYTEST_XDIST_WORKER="gw4", WEBHOOKS_TEST_REDIS_DB="12")
    stopped = _settings_import(env, "import tests.settings")
    assert stopped.returncode == 1
    assert "would use Redis database 16; Redis has 0 to 15" in stopped.stderr
    assert "WEBHOOKS_TEST_REDIS_DB=0" in stopped.stderr

    env.update(WEBHOOKS_TEST_REDIS_DB="0")
    started = _settings_import(
        env, "import tests.settings; print(tests.settings.CELERY_BROKER_URL)"
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip().endswith("/4")
