"""Prometheus metrics: what the delivery path counts as it works, and what the database says.

Two kinds, exposed together at ``GET /metrics`` (``views.metrics``):

- **Event metrics**, recorded where the work happens (``attempts_observe`` at the end of the
  record stage, ``events_fan_out_observe`` at the end of a fan-out batch): attempts by trigger,
  outcome and error kind, attempt durations, the delay from a delivery's creation to its first
  attempt and from an event's publication to its fan-out. They use prometheus-client's
  multiprocess mode: every process (gunicorn workers, Celery worker processes) writes its own
  file in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape sums the files of its host. A Celery worker
  can serve its host's sum on its own port (``WEBHOOKS_WORKER_METRICS_PORT``,
  ``worker_metrics_server_start``) for hosts without a web process.
- **State gauges**, computed at scrape time from PostgreSQL by ``StateCollector``: the due
  backlog and its age, what waits by design per reason, events awaiting fan-out, webhooks in
  a failure streak per school, beat, sweeper and worker liveness. They are the same whichever
  process or host answers.

Recording never raises: a metrics problem (an unwritable directory) is logged once and the
deliveries go on.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from common.clock import db_now
from common.metrics import metrics_access_refusal, metrics_enabled

from .logs import attempts_log
from .models import DeliveryStatus, Heartbeat
from .selectors import BACKLOG_COUNT_CAP, operations_state

if TYPE_CHECKING:
    from events.models import Event

    from .models import DeliveryAttempt

logger = logging.getLogger(__name__)

OUTCOMES: dict[str, str] = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.PENDING: "retrying",
    DeliveryStatus.FAILED: "failed",
}
# Schools named in the failure-streak gauges, longest streak first; the rest are summed under
# school="(other)", so the number of series stays bounded however many schools there are.
FAILING_SCHOOLS_SHOWN = 20
OTHER_SCHOOLS = "(other)"
# A worker whose heartbeat is older than this many intervals is counted as gone.
WORKER_ALIVE_INTERVALS = 3

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
_DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


# --- Event metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instruments:
    attempts: Counter
    duration: Histogram
    first_attempt_delay: Histogram
    fan_out_delay: Histogram
    failing_held: Counter
    # Label children by their values: a dict lookup instead of ``.labels()`` on the hot path.
    attempt_children: dict[tuple[str, str, str], Counter]
    duration_children: dict[str, Histogram]


_lock = threading.Lock()
_instruments: _Instruments | None = None
_unavailable = False


def _instruments_get() -> _Instruments | None:
    """The metric objects, made on first use (so importing this module writes no file);
    ``None`` if the metrics directory cannot be used, which is logged once."""
    global _instruments, _unavailable
    if _instruments is not None or _unavailable:
        return _instruments
    with _lock:
        if _instruments is None and not _unavailable:
            try:
                _instruments = _instruments_make()
            except Exception:
                _unavailable = True
                logger.exception("Metrics are not recorded in this process")
    return _instruments


def _instruments_make() -> _Instruments:
    directory = multiprocess_directory()
    if directory is None:
        raise RuntimeError(
            "prometheus-client was imported before the settings set PROMETHEUS_MULTIPROC_DIR, "
            "so its counters would stay in this process"
        )
    directory.mkdir(parents=True, exist_ok=True)
    attempts = Counter(
        "webhooks_delivery_attempts",
        "Delivery attempts, by trigger (automatic, manual, test, recovery), outcome (delivered, "
        "retrying: failed and scheduled again, failed: failed for good) and error kind (none on "
        "success).",
        ["trigger", "outcome", "error_kind"],
        registry=None,
    )
    duration = Histogram(
        "webhooks_delivery_attempt_duration_seconds",
        "Duration of delivery attempts (connect, send, read the answer), by outcome.",
        ["outcome"],
        buckets=_LATENCY_BUCKETS,
        registry=None,
    )
    first_attempt_delay = Histogram(
        "webhooks_delivery_first_attempt_delay_seconds",
        "From a delivery's creation (its event's fan-out) to the start of its first attempt.",
        buckets=_DELAY_BUCKETS,
        registry=None,
    )
    fan_out_delay = Histogram(
        "webhooks_event_fan_out_delay_seconds",
        "From an event's publication to its fan-out into deliveries.",
        buckets=_DELAY_BUCKETS,
        registry=None,
    )
    failing_held = Counter(
        "webhooks_failing_share_held",
        "Deliveries to failing receivers that a worker process held back because attempts to "
        "failing receivers had taken their share of its send threads "
        "(WEBHOOKS_FAILING_CONCURRENCY); each is counted at every claim that holds it back.",
        registry=None,
    )
    return _Instruments(
        attempts, duration, first_attempt_delay, fan_out_delay, failing_held, {}, {}
    )


def multiprocess_directory() -> Path | None:
    """The directory of this host's metric files; ``None`` if prometheus-client is not in
    multiprocess mode in this process (it chose its mode when first imported)."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.PROMETHEUS_MULTIPROC_DIR)


def attempts_observe(attempts: Sequence[DeliveryAttempt]) -> None:
    """Count and log a batch of recorded attempts; call once per batch, after recording.

    Each attempt's ``delivery`` carries its state after the record (delivered, pending again,
    failed). Per attempt: the attempts counter, the duration histogram, for an automatic first
    attempt the delay since the delivery was created, and one INFO log line
    (``deliveries.logs``). Never raises.
    """
    try:
        outcomes = [OUTCOMES.get(attempt.delivery.status, "retrying") for attempt in attempts]
        instruments = _instruments_get()
        if instruments is not None:
            _attempts_count(instruments, attempts, outcomes)
        attempts_log(attempts, outcomes)
    except Exception:
        logger.exception("Counting %d attempts failed", len(attempts))


def _attempts_count(
    instruments: _Instruments, attempts: Sequence[DeliveryAttempt], outcomes: list[str]
) -> None:
    attempt_children = instruments.attempt_children
    duration_children = instruments.duration_children
    # A batch has few distinct label sets: one counter write for each, not one per attempt.
    counts = collections.Counter(
        (str(attempt.trigger), outcome, str(attempt.error_kind) or "none")
        for attempt, outcome in zip(attempts, outcomes, strict=True)
    )
    for key, count in counts.items():
        counter = attempt_children.get(key)
        if counter is None:
            counter = attempt_children[key] = instruments.attempts.labels(*key)
        counter.inc(count)
    for attempt, outcome in zip(attempts, outcomes, strict=True):
        histogram = duration_children.get(outcome)
        if histogram is None:
            histogram = duration_children[outcome] = instruments.duration.labels(outcome)
        histogram.observe(attempt.duration_ms / 1000)
        if attempt.number == 1 and attempt.trigger == "automatic":
            delay = (attempt.started_at - attempt.delivery.created_at).total_seconds()
            instruments.first_attempt_delay.observe(max(delay, 0.0))


def failing_held_observe(count: int) -> None:
    """Count ``count`` deliveries a claim held back for the failing receivers' share of the
    process's send threads (``claim.FailingRoom``). Never raises."""
    try:
        instruments = _instruments_get()
        if instruments is not None:
            instruments.failing_held.inc(count)
    except Exception:
        logger.exception("Counting deliveries held for the failing receivers' share failed")


def events_fan_out_observe(
    *, events: Iterable[Event], fanned_out: Iterable[object], now: dt.datetime
) -> None:
    """Observe, for each event of a fan-out batch that was fanned out, the delay from its
    publication to ``now`` (the batch's time, its deliveries' ``created_at``). Never raises."""
    try:
        instruments = _instruments_get()
        if instruments is None:
            return
        done = set(fanned_out)
        for event in events:
            if event.id in done:
                delay = (now - event.created_at).total_seconds()
                instruments.fan_out_delay.observe(max(delay, 0.0))
    except Exception:
        logger.exception("Counting a fan-out batch failed")


# --- State gauges, from the database --------------------------------------------------------


def _age(now: dt.datetime, then: dt.datetime | None) -> float:
    """Seconds since ``then``; +Inf when it never happened (an alert on age fires)."""
    return math.inf if then is None else max((now - then).total_seconds(), 0.0)


class StateCollector(Collector):
    """The deployment's state, read from the database at each scrape (``operations_state``)."""

    def collect(self) -> Iterator[Metric]:
        now = db_now()
        state = operations_state(now=now)

        yield _gauge(
            "webhooks_deliveries_due",
            "Deliveries sent to the workers that none has taken yet: the queue and the work of "
            "workers that died, not deliveries waiting for their webhook's limits, circuit "
            f"breaker or pause (Send Tests aside); counted up to {BACKLOG_COUNT_CAP}.",
            state.due.count,
        )
        yield _gauge(
            "webhooks_deliveries_due_oldest_age_seconds",
            "How long the oldest delivery sent to the workers and not taken has been due "
            "(0: none).",
            _age(now, state.due.oldest) if state.due.oldest else 0.0,
        )
        waiting = GaugeMetricFamily(
            "webhooks_deliveries_waiting",
            "Deliveries that wait by design, without a message, in flight aside, each "
            "webhook's by the first reason that applies: paused (by its school), disabled "
            "(taken up to be failed, whatever the circuit), circuit_open (open or probing: they "
            "go one at a time as its probes), catching_up (sent one at a time after a pause), "
            "scheduled (a retry not due yet), limit (due, waiting for the webhook's "
            f"concurrency or rate); counted up to {BACKLOG_COUNT_CAP} due and as many not due "
            "per webhook.",
            labels=["reason"],
        )
        waiting_age = GaugeMetricFamily(
            "webhooks_deliveries_waiting_oldest_age_seconds",
            "How long the oldest delivery waiting for each reason has been due (0: none due).",
            labels=["reason"],
        )
        for reason, backlog in state.waiting.items():
            waiting.add_metric([reason], backlog.count)
            oldest = backlog.oldest
            waiting_age.add_metric(
                [reason], _age(now, oldest) if oldest is not None and oldest <= now else 0.0
            )
        yield waiting
        yield waiting_age
        yield _gauge(
            "webhooks_events_awaiting_fan_out",
            f"Published events not yet turned into deliveries; counted up to {BACKLOG_COUNT_CAP}.",
            state.awaiting_fan_out.count,
        )
        yield _gauge(
            "webhooks_events_awaiting_fan_out_oldest_age_seconds",
            "How long the oldest event awaiting fan-out has waited (0: none).",
            _age(now, state.awaiting_fan_out.oldest) if state.awaiting_fan_out.oldest else 0.0,
        )

        webhooks = GaugeMetricFamily(
            "webhooks_webhooks",
            "Webhooks by state: healthy (active, not in a failure streak), failing (active, "
            "its attempts failing since failing_since), paused (by its school), disabled.",
            labels=["state"],
        )
        for name in ("healthy", "failing", "paused", "disabled"):
            webhooks.add_metric([name], state.webhooks.get(name, 0))
        yield webhooks

        failing = GaugeMetricFamily(
            "webhooks_failing_webhooks",
            f"Active webhooks in a failure streak, per school (the {FAILING_SCHOOLS_SHOWN} "
            f'schools with the longest streaks; the others under school="{OTHER_SCHOOLS}").',
            labels=["school"],
        )
        streak = GaugeMetricFamily(
            "webhooks_failing_streak_seconds",
            "How long the longest failure streak of a school's active webhooks has lasted.",
            labels=["school"],
        )
        shown = state.failing_by_school[:FAILING_SCHOOLS_SHOWN]
        others = state.failing_by_school[FAILING_SCHOOLS_SHOWN:]
        for row in shown:
            failing.add_metric([row.school], row.failing)
            streak.add_metric([row.school], _age(now, row.failing_since))
        if others:
            failing.add_metric([OTHER_SCHOOLS], sum(row.failing for row in others))
            streak.add_metric([OTHER_SCHOOLS], _age(now, others[0].failing_since))
        yield failing
        yield streak

        yield _gauge(
            "webhooks_beat_last_tick_age_seconds",
            "Seconds since beat last sent its periodic tasks (+Inf: never seen).",
            _age(now, state.heartbeats.get(Heartbeat.BEAT)),
        )
        yield _gauge(
            "webhooks_sweeper_last_run_age_seconds",
            "Seconds since a worker last ran the sweeper, which beat sends every "
            "WEBHOOKS_SWEEP_INTERVAL_SECONDS (+Inf: never seen).",
            _age(now, state.heartbeats.get(Heartbeat.SWEEPER)),
        )
        yield _gauge(
            "webhooks_workers_alive",
            "Celery workers that noted they are alive within the last "
            f"{WORKER_ALIVE_INTERVALS} x WEBHOOKS_HEARTBEAT_SECONDS.",
            workers_alive(state.heartbeats, now=now),
        )


def workers_alive(heartbeats: dict[str, dt.datetime], *, now: dt.datetime) -> int:
    """How many ``worker:`` heartbeats are younger than ``WORKER_ALIVE_INTERVALS`` intervals."""
    alive_after = now - dt.timedelta(
        seconds=settings.WEBHOOKS_HEARTBEAT_SECONDS * WORKER_ALIVE_INTERVALS
    )
    return sum(
        1
        for name, seen_at in heartbeats.items()
        if name.startswith(Heartbeat.WORKER_PREFIX) and seen_at >= alive_after
    )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


# --- Exposition -----------------------------------------------------------------------------


def metrics_registry(*, state: bool) -> CollectorRegistry:
    """A registry with this host's event metrics and, when ``state``, the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_directory()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        MultiProcessCollector(registry, path=str(directory))
    if state:
        registry.register(StateCollector())
    return registry


def metrics_render() -> bytes:
    """The text exposition of ``GET /metrics``: this host's event metrics and the state."""
    return generate_latest(metrics_registry(state=True))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


_server: ThreadingWSGIServer | None = None


def worker_metrics_server_start() -> ThreadingWSGIServer | None:
    """In a Celery worker's main process: serve this host's event metrics on
    ``WEBHOOKS_WORKER_METRICS_ADDRESS``:``WEBHOOKS_WORKER_METRICS_PORT`` in a thread, with the
    same checks as /metrics. Returns the server, or ``None`` when the port is 0, when no token
    or networks are configured (the metrics would be public), or when the port is taken (another
    worker of this host serves the same files); each is logged.
    """
    global _server
    port = settings.WEBHOOKS_WORKER_METRICS_PORT
    if not port or _server is not None:
        return _server
    if not metrics_enabled():
        logger.warning(
            "WEBHOOKS_WORKER_METRICS_PORT is set but neither WEBHOOKS_METRICS_TOKEN nor "
            "WEBHOOKS_METRICS_ALLOWED_NETWORKS is: the worker does not serve metrics."
        )
        return None
    exposition = make_wsgi_app(metrics_registry(state=False))

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        refusal = metrics_access_refusal(
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            client_address=environ.get("REMOTE_ADDR", ""),
        )
        if refusal is not None:
            start_response(
                f"{refusal.status} {refusal.reason}",
                [("Content-Type", "text/plain"), *refusal.headers],
            )
            return [refusal.reason.encode()]
        return exposition(environ, start_response)  # type: ignore[no-any-return]

    address = settings.WEBHOOKS_WORKER_METRICS_ADDRESS
    try:
        server = make_server(address, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as exc:
        logger.warning("Worker metrics not served on %s:%s: %s", address, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    logger.info("Serving this host's metrics on %s:%s", address, port)
    _server = server
    return server


def worker_metrics_server_stop() -> None:
    """Stop the server ``worker_metrics_server_start`` started, if any."""
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None
