"""Settings for the webhooks project, read from environment variables.

``DJANGO_*`` configure Django, ``WEBHOOKS_*`` configure the product, ``DATABASE_URL`` and
``CELERY_BROKER_URL`` choose the servers. With neither of the last two set, the project runs on an
embedded default (a SQLite file and a filesystem broker under ``WEBHOOKS_DATA_DIR``) so that
``make run`` needs no server. ``.env.example`` lists every variable with its default.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import math
import os
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false).")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from exc


def env_time(name: str, default: str) -> time:
    raw = os.environ.get(name) or default
    try:
        return time.fromisoformat(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a time of day (use HH:MM).") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# --- Django ---------------------------------------------------------------------------------

# Without DATABASE_URL this is the embedded development setup (SQLite under var/), where DEBUG
# defaults to true so that manage.py works with no configuration at all; a deployment sets
# DATABASE_URL, and there DEBUG defaults to false.
DEBUG = env_bool("DJANGO_DEBUG", not os.environ.get("DATABASE_URL"))
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false.")
    SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# DJANGO_HTTPS: the site is served over HTTPS only (a deployment). Plain HTTP is redirected, except
# /health/ that load balancers probe over HTTP; cookies are Secure; HSTS tells browsers to use HTTPS
# for this host and its subdomains for DJANGO_SECURE_HSTS_SECONDS (0 sends no HSTS header). Behind
# a proxy that ends TLS, gunicorn marks a request secure from the proxy's X-Forwarded-Proto when
# the proxy's address is in its FORWARDED_ALLOW_IPS (127.0.0.1 by default).
_https = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = _https
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 86400 if _https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
# "preload" only matters if the domain's owner submits the domain to the browsers' preload list.
SECURE_HSTS_PRELOAD = _https

INSTALLED_APPS = [
    "deliveries.apps.WebhooksAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "common",
    "schools",
    "audit",
    "events",
    "subscriptions",
    "deliveries",
]

MIDDLEWARE = [
    # /health/ for load balancers, which probe by address: before the host check and redirect.
    "webhooks_project.middleware.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JavaScript (``collectstatic`` into DJANGO_STATIC_ROOT), served by the
    # web processes themselves, compressed and with caching headers: no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Oversized bodies (413) and parameters that cannot be stored (400), before anything else.
    "common.middleware.RequestInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: with no choice made and no language of the browser's that we speak,
    # the admin speaks the user's school's language.
    "schools.middleware.LocaleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webhooks_project.urls"
WSGI_APPLICATION = "webhooks_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
            ],
        },
    },
]

WEBHOOKS_DATA_DIR = Path(env_str("WEBHOOKS_DATA_DIR", str(BASE_DIR / "var")))

# PostgreSQL's JIT compiler, which compiles a query whose estimated cost is high before running
# it (common/apps.py). Off: this application's queries are short, and compiling cost 370 ms of
# CPU in a sweep (every 2 s) that runs in 30 ms without it, with a million deliveries stored.
DATABASE_JIT = env_bool("DATABASE_JIT", False)

# In the delivery workers (webhooks_project/celery.py), a statement run this many times on one
# PostgreSQL session is prepared once, and PostgreSQL may then keep its plan instead of parsing
# and planning it at every run: the engine runs the same few statements thousands of times.
# Not in the web processes, where a kept plan can be wrong for the admin's varied filters
# (a list filtered on a rare status took 15-20 % longer). 0 turns it off, as a connection pooler
# that does not keep prepared statements needs. Only with DATABASE_SERVER_SIDE_BINDING (the
# default): statements whose parameters are quoted in by the client are never prepared.
DATABASE_WORKER_PREPARE_THRESHOLD = env_int("DATABASE_WORKER_PREPARE_THRESHOLD", 5)
if DATABASE_WORKER_PREPARE_THRESHOLD < 0:
    raise ImproperlyConfigured(
        f"DATABASE_WORKER_PREPARE_THRESHOLD={DATABASE_WORKER_PREPARE_THRESHOLD} must be 0 (off) "
        "or more."
    )

# PostgreSQL through psycopg 3 when DATABASE_URL is set; otherwise the embedded SQLite file.
# The SQLite options are the ones that keep web, worker and beat from failing with
# "database is locked" when they write at the same time.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _conn_max_age = env_int("DATABASE_CONN_MAX_AGE", 60)
    # A SELECT 1 at the start of each request or task, so a connection the database dropped
    # is replaced before it fails a request; off saves that round trip.
    _conn_health_checks = env_bool("DATABASE_CONN_HEALTH_CHECKS", True)
    try:
        _database = dj_database_url.parse(
            DATABASE_URL, conn_max_age=_conn_max_age, conn_health_checks=_conn_health_checks
        )
    except ValueError as exc:
        # Not the URL itself in the message: it may hold the password.
        raise ImproperlyConfigured(
            f"DATABASE_URL is not a database URL ({exc}); use "
            "postgres://user:password@host:5432/name, with special characters in the password "
            "percent-encoded."
        ) from None
    DATABASES = {"default": _database}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Parameters travel apart from the statement instead of being quoted into it by the
        # client: large inserts and the delivery engine's batch statements cost far less CPU.
        DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env_bool(
            "DATABASE_SERVER_SIDE_BINDING", True
        )
else:
    WEBHOOKS_DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(WEBHOOKS_DATA_DIR / "db.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The admin's languages: a user's choice (the language menu, kept in a cookie), else the
# browser's, else their school's. Catalogs in locale/ (see the README's Translations).
LANGUAGES = [("en", "English"), ("fr", "Français"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Dates and times as the admin shows them in each language (with seconds and the zone named).
FORMAT_MODULE_PATH = ["webhooks_project.formats"]
LANGUAGE_COOKIE_AGE = 365 * 86400
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(WEBHOOKS_DATA_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic also writes a gzip copy of each file, which WhiteNoise sends to browsers
    # that accept it.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "admin:login"

# WEBHOOKS_LOG_FORMAT: "plain" lines for people, or "json", one object per line for a log
# pipeline: time, level, logger, message and the record's fields (each delivery attempt's line
# carries delivery_id, webhook_id, school, webhook, attempt, outcome, ...; see deliveries/logs.py).
WEBHOOKS_LOG_FORMAT = env_str("WEBHOOKS_LOG_FORMAT", "plain").strip().lower()
if WEBHOOKS_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(
        f"WEBHOOKS_LOG_FORMAT={WEBHOOKS_LOG_FORMAT!r} is not a log format (use plain or json)."
    )
DJANGO_LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "INFO").strip().upper()
if DJANGO_LOG_LEVEL not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
    raise ImproperlyConfigured(
        f"DJANGO_LOG_LEVEL={DJANGO_LOG_LEVEL!r} is not a log level "
        "(use DEBUG, INFO, WARNING, ERROR or CRITICAL)."
    )
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "common.logging.JsonFormatter"},
    },
    # What could not be done while the broker, the database or the cache is down: one line
    # each, with its cause, no traceback.
    "filters": {
        "outage": {"()": "common.logging.OutageFilter"},
        # Beat's ticks of a minute or less (set below, with the schedule) are logged once.
        "routine_ticks": {"()": "common.logging.RoutineTickFilter", "tasks": []},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": WEBHOOKS_LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": DJANGO_LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery.beat": {"filters": ["outage", "routine_ticks"]},
        "celery.worker.strategy": {"filters": ["routine_ticks"]},
        "celery.app.trace": {"filters": ["routine_ticks"]},
        "django_celery_beat.schedulers": {"filters": ["outage"]},
        "webhooks_project.celery": {"filters": ["outage"]},
        # ... and what a web request could not do: ask for a fan-out, count a failed login.
        "deliveries.services.fan_out": {"filters": ["outage"]},
        "schools.throttles": {"filters": ["outage"]},
    },
}

# --- Django REST framework ------------------------------------------------------------------

# Reverse proxies in front of the web processes: with N, the client's address is the N-th from
# the right of X-Forwarded-For (what the outermost proxy saw); with 0 the header is ignored,
# since anyone can write it.
WEBHOOKS_TRUSTED_PROXIES = env_int("WEBHOOKS_TRUSTED_PROXIES", 0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["schools.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["common.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "common.api.PageNumberPagination",
    "EXCEPTION_HANDLER": "common.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Behind this many reverse proxies the client's address is read from X-Forwarded-For;
    # 0 (the default) reads the connection's address and ignores the header.
    "NUM_PROXIES": WEBHOOKS_TRUSTED_PROXIES,
    "DEFAULT_THROTTLE_RATES": {
        # Send Test and the body preview render and send on demand: a key gets this many.
        "webhook-test": env_str("WEBHOOKS_TEST_RATE", "30/minute"),
        "body-preview": env_str("WEBHOOKS_PREVIEW_RATE", "60/minute"),
    },
}

# Throttle counters (failed API authentications and admin logins, Send Test and preview rates):
# Redis when DJANGO_CACHE_URL is set, shared by every process; else per process (check --deploy
# warns).
DJANGO_CACHE_URL = env_str("DJANGO_CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DJANGO_CACHE_URL}
        if DJANGO_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    ),
    # Per-process copies of rarely changed rows read on every ingest (a school by its slug, an
    # event type): a change made in another process is seen within this many seconds.
    "lookups": {
        # Schools and event types read on every published event, kept unpickled per process.
        "BACKEND": "common.cache.ObjectCache",
        "LOCATION": "webhooks-lookups",
        "TIMEOUT": env_float("WEBHOOKS_LOOKUP_CACHE_SECONDS", 10.0),
        "OPTIONS": {"MAX_ENTRIES": 20_000},
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "School webhooks API",
    "DESCRIPTION": (
        "Manage a school's webhooks, read its delivery log, and publish events. Authenticate "
        "with `Authorization: Bearer <key>`: a school's API key, or the platform's key to "
        'publish events. Errors are JSON: `{"errors": {"field": ["message"]}}` for '
        'invalid input, `{"detail": "message"}` otherwise.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.schema.responses_complete",
        "common.schema.filters_not_empty",
    ],
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "deliveries.models.DeliveryStatus",
        "ContentTypeEnum": "subscriptions.models.ContentType",
    },
}

# --- Celery ---------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
if CELERY_BROKER_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # gevent workers ack from many greenlets at once; kombu's default pool of 10 is too small.
        "max_connections": env_int("CELERY_BROKER_MAX_CONNECTIONS", 200),
        # A Redis that takes the connection and stops answering (paused, partitioned) would
        # otherwise hold a publish, and the web request behind it, for as long as it hangs.
        # Above the worker's 1 s BRPOP, so an idle consumer never times out.
        "socket_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 3.0),
        "socket_connect_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 3.0),
    }
    if CELERY_BROKER_TRANSPORT_OPTIONS["socket_timeout"] <= 1:  # type: ignore[operator]
        raise ImproperlyConfigured("CELERY_BROKER_SOCKET_TIMEOUT must be more than 1 (seconds).")
else:
    # Embedded default: a filesystem broker that needs no server (see webhooks_project/fsbroker.py).
    _broker_dir = WEBHOOKS_DATA_DIR / "broker"
    CELERY_BROKER_URL = "webhooksfs://localhost//"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }

CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "webhooks")
# The product's own messages (fan-out, deliveries, the disabled webhook's e-mail) retry their
# publish once (a connection the broker closed, as after its restart, is made again), not
# Celery's three times: they are sent from web requests and tasks, and against a broker that
# stopped answering each try costs CELERY_BROKER_SOCKET_TIMEOUT.
WEBHOOKS_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 45)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "webhooks_project.beat:DatabaseScheduler"
# Without this Celery closes every database connection before and after each task, so each task
# pays a new PostgreSQL connection. Connections are recycled by DATABASE_CONN_MAX_AGE instead
# (see webhooks_project/celery.py).
CELERY_DB_REUSE_MAX = 1000

# --- The product ----------------------------------------------------------------------------

# Every outbound attempt: connect, send, and read the whole response within this many seconds.
WEBHOOKS_TIMEOUT_SECONDS = env_float("WEBHOOKS_TIMEOUT_SECONDS", 15.0)
# Response bodies are kept in the attempt log up to this size; the rest is not even read.
WEBHOOKS_RESPONSE_BODY_MAX_BYTES = env_int("WEBHOOKS_RESPONSE_BODY_MAX_BYTES", 64 * 1024)
# Largest event data accepted by event_publish(), in bytes of JSON.
WEBHOOKS_EVENT_DATA_MAX_BYTES = env_int("WEBHOOKS_EVENT_DATA_MAX_BYTES", 256 * 1024)

# Retry schedule: attempt 1 at once, then gaps of base, 2*base, 4*base, ... and the last attempt
# at the end of the window (edudip: 2 s, 4 s, 8 s, ..., the 17th at 24 h).
WEBHOOKS_RETRY_BASE_SECONDS = env_float("WEBHOOKS_RETRY_BASE_SECONDS", 2.0)
WEBHOOKS_RETRY_MAX_ATTEMPTS = env_int("WEBHOOKS_RETRY_MAX_ATTEMPTS", 17)
WEBHOOKS_RETRY_WINDOW_SECONDS = env_float("WEBHOOKS_RETRY_WINDOW_SECONDS", 24 * 3600.0)
WEBHOOKS_RETRY_JITTER = env_float("WEBHOOKS_RETRY_JITTER", 0.1)

# The sweeper re-drives lost work: events not fanned out and deliveries due but not picked up
# (a message lost with a broker restart, a worker killed mid-attempt), and probes webhooks whose
# circuit is open. Together with the lease below this bounds how long a fault keeps work away.
WEBHOOKS_SWEEP_INTERVAL_SECONDS = env_float("WEBHOOKS_SWEEP_INTERVAL_SECONDS", 2.0)
WEBHOOKS_REDRIVE_AFTER_SECONDS = env_float("WEBHOOKS_REDRIVE_AFTER_SECONDS", 10.0)
# Retries due sooner than this are sent with a Celery countdown; later ones wait for the sweeper.
WEBHOOKS_COUNTDOWN_MAX_SECONDS = env_float("WEBHOOKS_COUNTDOWN_MAX_SECONDS", 60.0)
# Events a fan-out task turns into deliveries in one transaction; a full batch asks for another.
WEBHOOKS_FAN_OUT_BATCH_SIZE = env_int("WEBHOOKS_FAN_OUT_BATCH_SIZE", 200)
# ... and at most about this many bytes of rendered bodies, so a batch stays small in memory.
WEBHOOKS_FAN_OUT_MAX_BYTES = env_int("WEBHOOKS_FAN_OUT_MAX_BYTES", 16 * 1024 * 1024)
# An event for more webhooks than this is fanned out in pieces of this size, each committed and
# handed to the workers at once, so the first attempts start while the rest is being built.
WEBHOOKS_FAN_OUT_CHUNK_SIZE = env_int("WEBHOOKS_FAN_OUT_CHUNK_SIZE", 1000)
# A replay (re-sending a webhook's events of some types or a time range) refuses to make more
# deliveries than this in one request: narrow the range and replay in parts.
WEBHOOKS_REPLAY_MAX_EVENTS = env_int("WEBHOOKS_REPLAY_MAX_EVENTS", 10_000)
# Deliveries per task message; a task sends its deliveries concurrently.
WEBHOOKS_DELIVERY_BATCH_SIZE = env_int("WEBHOOKS_DELIVERY_BATCH_SIZE", 50)
# How long a worker owns a delivery it claimed without renewing it: the worker renews the leases
# of its deliveries in flight every third of this, so a killed worker's deliveries are sent again
# within about this long. A synchronous attempt (Send Test) holds WEBHOOKS_TIMEOUT_SECONDS more.
WEBHOOKS_LEASE_SECONDS = env_float("WEBHOOKS_LEASE_SECONDS", 10.0)
# Requests in flight at once per worker process (threads that wait on receivers, not CPUs,
# started as needed). Enough for 64 webhooks hanging at once at the default concurrency of 8.
WEBHOOKS_SEND_THREADS = env_int("WEBHOOKS_SEND_THREADS", 512)
# Of those, requests in flight at once per worker process to failing receivers: the retries and
# probes of webhooks whose receivers fail on the network (timeouts, refused connections, ...),
# and the deliveries to a receiver host whose last attempt in that process failed so (or that is
# silent, below). When many receivers are down at once (a receiver host that many schools'
# webhooks point at), their hanging attempts leave the other receivers the rest of the threads
# (README, "How it works").
WEBHOOKS_FAILING_CONCURRENCY = env_int(
    "WEBHOOKS_FAILING_CONCURRENCY", max(1, WEBHOOKS_SEND_THREADS // 2)
)
# A receiver host whose requests have been in flight this long in a worker process with no
# answer counts there as failing too, before its first requests time out: a host gone down
# then holds at most its first few seconds' requests outside that share.
WEBHOOKS_SILENT_HOST_SECONDS = env_float("WEBHOOKS_SILENT_HOST_SECONDS", 2.0)

# Per webhook: requests in flight at once unless the webhook sets its own limit, so one slow or
# dead receiver never takes more than its share of the workers.
WEBHOOKS_ENDPOINT_CONCURRENCY = env_int("WEBHOOKS_ENDPOINT_CONCURRENCY", 8)
# The circuit breaker: after this many network failures in a row (timeouts, refused or broken
# connections, DNS, TLS) a webhook's deliveries wait and one probe is sent after the cool-down,
# which doubles with each failed probe up to the maximum.
WEBHOOKS_CIRCUIT_FAILURES = env_int("WEBHOOKS_CIRCUIT_FAILURES", 5)
WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS = env_float("WEBHOOKS_CIRCUIT_COOLDOWN_SECONDS", 30.0)
WEBHOOKS_CIRCUIT_COOLDOWN_MAX_SECONDS = env_float(
    "WEBHOOKS_CIRCUIT_COOLDOWN_MAX_SECONDS", 15 * 60.0
)

# Destinations in these networks are allowed even though they are not public (CIDRs).
WEBHOOKS_ALLOWED_NETWORKS = env_list("WEBHOOKS_ALLOWED_NETWORKS")
for _network in WEBHOOKS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"WEBHOOKS_ALLOWED_NETWORKS: {_network!r} is not a network (use CIDRs)."
        ) from None

# API keys a school may have active at once (Edusign: 5).
WEBHOOKS_API_KEYS_PER_SCHOOL = env_int("WEBHOOKS_API_KEYS_PER_SCHOOL", 5)
# Largest request body the API accepts, POST /api/v1/events/ included (413 above it).
WEBHOOKS_INGEST_MAX_BYTES = env_int("WEBHOOKS_INGEST_MAX_BYTES", 512 * 1024)
# Failed API authentications allowed per client address per minute (429 beyond).
WEBHOOKS_AUTH_FAILURES_PER_MINUTE = env_int("WEBHOOKS_AUTH_FAILURES_PER_MINUTE", 20)
# Failed admin logins allowed per client address, and per username, in this many seconds
# (counted from the first); past it, every login of that address or username is refused until
# the window is over, the right password included.
WEBHOOKS_ADMIN_LOGIN_FAILURES = env_int("WEBHOOKS_ADMIN_LOGIN_FAILURES", 10)
WEBHOOKS_ADMIN_LOGIN_WINDOW_SECONDS = env_float("WEBHOOKS_ADMIN_LOGIN_WINDOW_SECONDS", 900.0)

# Fernet keys that encrypt secrets at rest (basic-auth passwords, signing secrets): the first
# encrypts, all decrypt. Without it, a key derived from DJANGO_SECRET_KEY is used, and only when
# DJANGO_DEBUG is true.
WEBHOOKS_ENCRYPTION_KEYS = env_list("WEBHOOKS_ENCRYPTION_KEYS")
if not WEBHOOKS_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "WEBHOOKS_ENCRYPTION_KEYS must be set when DJANGO_DEBUG is false (see .env.example)."
        )
    WEBHOOKS_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(hashlib.sha256(b"fernet:" + SECRET_KEY.encode()).digest()).decode()
    ]

# Ed25519 keys (Standard Webhooks ``whsk_...``) for the asymmetric ``v1a`` signature: every key
# signs, the first is the one served at /.well-known/webhooks/public-key.pem, all are in the JWKS.
# Without it a key derived from DJANGO_SECRET_KEY is used when DJANGO_DEBUG is true; otherwise
# subscriptions cannot turn on v1a.
WEBHOOKS_ED25519_KEYS = env_list("WEBHOOKS_ED25519_KEYS")
if not WEBHOOKS_ED25519_KEYS and DEBUG:
    WEBHOOKS_ED25519_KEYS = [
        "whsk_"
        + base64.b64encode(hashlib.sha256(b"ed25519:" + SECRET_KEY.encode()).digest()).decode()
    ]

# The P-256 ECDSA key of the edudip profile's X-Edudip-Signature (base64 of the 32-byte private
# number, or of a DER PKCS#8 key); its public half is served at
# /.well-known/webhooks/ecdsa-public-key.pem. Without it a key derived from DJANGO_SECRET_KEY is
# used when DJANGO_DEBUG is true; otherwise webhooks cannot use the edudip profile.
WEBHOOKS_ECDSA_KEY = env_str("WEBHOOKS_ECDSA_KEY")
if not WEBHOOKS_ECDSA_KEY and DEBUG:
    WEBHOOKS_ECDSA_KEY = base64.b64encode(
        hashlib.sha256(b"ecdsa-p256:" + SECRET_KEY.encode()).digest()
    ).decode()

# After a signing-secret rotation the old secret keeps signing this long (both are sent).
WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS = env_float(
    "WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS", 24 * 3600.0
)
# 0 retires the old secret at once (a leaked one); a negative grace has no meaning: a typo.
if WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS < 0:
    raise ImproperlyConfigured("WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS must be 0 or more.")
# A webhook whose every attempt has failed for this long is disabled and its admins e-mailed.
WEBHOOKS_AUTO_DISABLE_AFTER_SECONDS = env_float("WEBHOOKS_AUTO_DISABLE_AFTER_SECONDS", 5 * 86400.0)

# Outgoing e-mail (failure notifications). The console backend prints instead of sending.
EMAIL_BACKEND = env_str(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("DJANGO_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("DJANGO_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "webhooks@localhost")
# Seconds to connect to the mail server and for each of its answers. Django waits for ever by
# default: a server that takes the connection and never answers held the process that
# disabled a webhook (a worker's recorder after a 410, the sweeper) for good.
EMAIL_TIMEOUT = env_float("DJANGO_EMAIL_TIMEOUT", 10.0)

# Delivered and failed deliveries (and their attempts) are deleted after this many days.
WEBHOOKS_RETENTION_DAYS = env_float("WEBHOOKS_RETENTION_DAYS", 30.0)
# /health/ answers 503 when a due delivery has waited longer than this for a worker.
WEBHOOKS_HEALTH_MAX_LAG_SECONDS = env_float("WEBHOOKS_HEALTH_MAX_LAG_SECONDS", 300.0)

# --- Metrics (GET /metrics, Prometheus) ----------------------------------------------------

# /metrics answers only a request that passes every check configured here; with neither set it
# is a 404. A token is sent as "Authorization: Bearer <token>". Networks are CIDRs, matched
# against the client's address (read from X-Forwarded-For only behind WEBHOOKS_TRUSTED_PROXIES).
WEBHOOKS_METRICS_TOKEN = env_str("WEBHOOKS_METRICS_TOKEN")
if WEBHOOKS_METRICS_TOKEN and len(WEBHOOKS_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("WEBHOOKS_METRICS_TOKEN must be 16 characters or more.")
WEBHOOKS_METRICS_ALLOWED_NETWORKS = env_list("WEBHOOKS_METRICS_ALLOWED_NETWORKS")
for _network in WEBHOOKS_METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"WEBHOOKS_METRICS_ALLOWED_NETWORKS: {_network!r} is not a network (use CIDRs)."
        ) from exc
# Counters and histograms are written by every process (gunicorn workers, Celery worker
# processes) to files in this directory, in prometheus-client's multiprocess mode, and summed
# when /metrics is read. One directory per host (or per service), emptied before its processes
# start: see the README's Operations section. prometheus-client reads the environment variable,
# so it is set here for the libraries imported after the settings.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(WEBHOOKS_DATA_DIR / "metrics"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
# A Celery worker also serves its host's counters on this port (0: it does not), with the same
# checks as /metrics: for hosts that run workers but no web process.
WEBHOOKS_WORKER_METRICS_PORT = env_int("WEBHOOKS_WORKER_METRICS_PORT", 0)
WEBHOOKS_WORKER_METRICS_ADDRESS = env_str("WEBHOOKS_WORKER_METRICS_ADDRESS", "0.0.0.0")  # noqa: S104
# Each worker and the sweeper note that they are alive this often (read by /metrics).
WEBHOOKS_HEARTBEAT_SECONDS = env_float("WEBHOOKS_HEARTBEAT_SECONDS", 10.0)

# Sizes, counts and periods of 0 or less would send nothing, refuse every batch or spin.
for _name in (
    "WEBHOOKS_TIMEOUT_SECONDS",
    "WEBHOOKS_RESPONSE_BODY_MAX_BYTES",
    "WEBHOOKS_EVENT_DATA_MAX_BYTES",
    "WEBHOOKS_INGEST_MAX_BYTES",
    "WEBHOOKS_SWEEP_INTERVAL_SECONDS",
    "WEBHOOKS_REDRIVE_AFTER_SECONDS",
    "WEBHOOKS_FAN_OUT_BATCH_SIZE",
    "WEBHOOKS_FAN_OUT_MAX_BYTES",
    "WEBHOOKS_FAN_OUT_CHUNK_SIZE",
    "WEBHOOKS_DELIVERY_BATCH_SIZE",
    "WEBHOOKS_LEASE_SECONDS",
    "WEBHOOKS_SEND_THREADS",
    "WEBHOOKS_FAILING_CONCURRENCY",
    "WEBHOOKS_SILENT_HOST_SECONDS",
    "WEBHOOKS_ENDPOINT_CONCURRENCY",
    "WEBHOOKS_CIRCUIT_FAILURES",
    "WEBHOOKS_HEARTBEAT_SECONDS",
):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be more than 0.")

# Serve /demo/receiver/, an endpoint that verifies and accepts deliveries (for `make run`).
WEBHOOKS_DEMO_RECEIVER = env_bool("WEBHOOKS_DEMO_RECEIVER", DEBUG)

# Scheduled events (a course's start) are published by a beat task this often, so at most about
# this long plus a worker's pick-up after their time; up to this many per transaction.
WEBHOOKS_SCHEDULED_EVENTS_INTERVAL_SECONDS = env_float(
    "WEBHOOKS_SCHEDULED_EVENTS_INTERVAL_SECONDS", 1.0
)
WEBHOOKS_SCHEDULED_EVENTS_BATCH_SIZE = env_int("WEBHOOKS_SCHEDULED_EVENTS_BATCH_SIZE", 100)
# The daily cron.midnight event: at this UTC time unless a school chose a local time, checked
# this often (a school's event is sent within about this long after its time).
WEBHOOKS_DAILY_EVENT_UTC_TIME = env_time("WEBHOOKS_DAILY_EVENT_UTC_TIME", "00:07")
WEBHOOKS_DAILY_EVENTS_INTERVAL_SECONDS = env_float("WEBHOOKS_DAILY_EVENTS_INTERVAL_SECONDS", 30.0)

# Each tick expires if no worker took it in time: the next tick does the same work, so while the
# workers are down beat's messages do not pile up for them to run one after another on return.
# django-celery-beat's DatabaseScheduler reads the option "expire_seconds" (whole seconds) and
# drops Celery's "expires".
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "deliveries-sweep": {
        "task": "deliveries.sweep",
        "schedule": timedelta(seconds=WEBHOOKS_SWEEP_INTERVAL_SECONDS),
        "options": {"expire_seconds": math.ceil(WEBHOOKS_SWEEP_INTERVAL_SECONDS * 2)},
    },
    "deliveries-prune": {
        "task": "deliveries.prune",
        "schedule": timedelta(hours=1),
        "options": {"expire_seconds": 3600},
    },
    "subscriptions-auto-disable": {
        "task": "subscriptions.auto_disable",
        "schedule": timedelta(minutes=5),
        "options": {"expire_seconds": 300},
    },
    "events-scheduled-publish-due": {
        "task": "events.scheduled_events_publish_due",
        "schedule": timedelta(seconds=WEBHOOKS_SCHEDULED_EVENTS_INTERVAL_SECONDS),
        "options": {
            "expire_seconds": math.ceil(max(WEBHOOKS_SCHEDULED_EVENTS_INTERVAL_SECONDS * 2, 2.0))
        },
    },
    "events-daily-publish-due": {
        "task": "events.daily_events_publish_due",
        "schedule": timedelta(seconds=WEBHOOKS_DAILY_EVENTS_INTERVAL_SECONDS),
        "options": {"expire_seconds": math.ceil(WEBHOOKS_DAILY_EVENTS_INTERVAL_SECONDS * 2)},
    },
}
LOGGING["filters"]["routine_ticks"]["tasks"] = [
    entry["task"]
    for entry in CELERY_BEAT_SCHEDULE.values()
    if entry["schedule"] <= timedelta(minutes=1)
]
