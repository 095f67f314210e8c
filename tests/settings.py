"""Settings for the test suite: the project's settings on real PostgreSQL and Redis.

The servers default to the ones every development machine and CI run on 127.0.0.1; set
DATABASE_URL or CELERY_BROKER_URL to point the suite elsewhere. The suite uses its own Redis
database number and a queue name unique to the run, so its workers never take anyone else's tasks.
"""

import os
import tempfile
import uuid

# A parallel run (``make test`` runs the suite in pytest-xdist processes gw0, gw1, ...) starts
# its processes from one that loaded these settings first: the per-run defaults that one chose
# for itself below (a Redis database, a queue, a metric directory) are chosen again in each, so
# no two of them, nor the workers they start, share a queue or a counter. The processes a test
# starts keep their test process's.
_PER_PROCESS = ("CELERY_BROKER_URL", "CELERY_TASK_DEFAULT_QUEUE", "PROMETHEUS_MULTIPROC_DIR")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if os.environ.get("WEBHOOKS_TEST_DEFAULTS_FOR") != _WORKER:
    for _name in os.environ.pop("WEBHOOKS_TEST_DEFAULTED", "").split():
        os.environ.pop(_name, None)
if "WEBHOOKS_TEST_DEFAULTED" not in os.environ:
    os.environ["WEBHOOKS_TEST_DEFAULTS_FOR"] = _WORKER
    os.environ["WEBHOOKS_TEST_DEFAULTED"] = " ".join(n for n in _PER_PROCESS if n not in os.environ)

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
# Redis database WEBHOOKS_TEST_REDIS_DB (12 by default), the next one for gw1, and so on.
_REDIS_DB = int(os.environ.get("WEBHOOKS_TEST_REDIS_DB", "12")) + int(_WORKER[2:] or 0)
if _REDIS_DB > 15 and "CELERY_BROKER_URL" not in os.environ:
    # Redis has databases 0 to 15; a number past them fails every worker's connection.
    raise SystemExit(
        f"Test process {_WORKER} would use Redis database {_REDIS_DB}; Redis has 0 to 15. "
        "Run fewer processes (TEST_PROCESSES) or start lower (WEBHOOKS_TEST_REDIS_DB=0 "
        "allows 16)."
    )
os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{_REDIS_DB}")
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"webhooks-test-{uuid.uuid4().hex[:12]}")
os.environ.setdefault("WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8")
# Fixed test keys (never used outside the suite): Fernet for secrets at rest, Ed25519 for v1a.
os.environ.setdefault("WEBHOOKS_ENCRYPTION_KEYS", "hKo2AnLtbu5I2Gaf8wZlOV3IzZxfVprPmp0Gmrg4Ivw=")
os.environ.setdefault("WEBHOOKS_ED25519_KEYS", "whsk_bsNtjN2A0QbJA0kcD2jrLHO6GZkQKbHTnOJw6OkYLt4=")
# ... and a P-256 ECDSA key for the edudip profile (its 32-byte private number in base64).
os.environ.setdefault("WEBHOOKS_ECDSA_KEY", "q1RUjfNlmYd1I0sU9FvJQ0GsZP3xT3hQdZ5k1Rm6Xxo=")
# A shrunk retry schedule (0 s, 0.2 s, 0.6 s, 1.4 s, then the last at 3 s) so tests see all of it.
os.environ.setdefault("WEBHOOKS_RETRY_BASE_SECONDS", "0.2")
os.environ.setdefault("WEBHOOKS_RETRY_MAX_ATTEMPTS", "5")
os.environ.setdefault("WEBHOOKS_RETRY_WINDOW_SECONDS", "3")
os.environ.setdefault("WEBHOOKS_RETRY_JITTER", "0")
# Attempts give up after 2 s instead of 15 s, so timeouts are quick to show.
os.environ.setdefault("WEBHOOKS_TIMEOUT_SECONDS", "2")
# A shrunk circuit-breaker cool-down (0.5 s, doubling) so a dead receiver's deliveries still run
# their whole schedule within a test.
os.environ.setdefault("WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS", "0.5")

# This run's metric files, shared with the workers it starts (tests/conftest.py removes them).
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # made only when none is given
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="webhooks-metrics-")
# Workers and beat note they are alive every second, so tests need not wait for it.
os.environ.setdefault("WEBHOOKS_HEARTBEAT_SECONDS", "1")

from webhooks_project.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Each test starts with an empty cache (tests/conftest.py clears it): never a shared server's.
CACHES["default"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}  # noqa: F405
# Nothing is collected for the suite: static files are looked up per request (from the apps when
# DEBUG is on), not indexed at start-up from a DJANGO_STATIC_ROOT that does not exist.
# tests/test_deploy_check.py collects them and serves them as a deployment does.
WHITENOISE_AUTOREFRESH = True
