"""The Celery application: configured from Django settings (``CELERY_*``), tasks from each app."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from celery import Celery, bootsteps
from celery.signals import after_task_publish, beat_init, task_prerun, worker_init
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")

# The embedded broker used when no CELERY_BROKER_URL is set (see fsbroker.py).
TRANSPORT_ALIASES["webhooksfs"] = "webhooks_project.fsbroker:Transport"

logger = logging.getLogger(__name__)

app = Celery("webhooks_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _database_connections_refresh(**kwargs: Any) -> None:
    """Give each task what Django gives each request: connections past their CONN_MAX_AGE or
    broken by an error are replaced, the others are health-checked and reused."""
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect
def _statements_prepare(**kwargs: Any) -> None:
    """In a worker (before its pool starts): its database sessions prepare the statements they
    run over and over (``DATABASE_WORKER_PREPARE_THRESHOLD``; ``settings.py`` says why only
    here)."""
    from django.conf import settings

    from common.apps import statements_prepare

    statements_prepare(settings.DATABASE_WORKER_PREPARE_THRESHOLD)


# --- Liveness and metrics -------------------------------------------------------------------
# Read by GET /metrics (deliveries/metrics.py): each worker's heartbeat, beat's, and a worker's
# own metrics port. Django is imported inside the functions: this module is read before the
# settings are.


class WorkerHeartbeat(bootsteps.StartStopStep):
    """In a worker's main process: note ``worker:<hostname>`` alive every
    ``WEBHOOKS_HEARTBEAT_SECONDS`` on the worker's own timer, forget it on a clean stop, and
    serve the host's metrics when ``WEBHOOKS_WORKER_METRICS_PORT`` is set."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entry: Any = None
        self.heartbeat_name = ""

    def start(self, parent: Any) -> None:
        from django.conf import settings

        from deliveries.metrics import worker_metrics_server_start

        self.heartbeat_name = f"worker:{parent.hostname}"
        self.timer_entry = parent.timer.call_repeatedly(
            settings.WEBHOOKS_HEARTBEAT_SECONDS, self.heartbeat, priority=10
        )
        self.heartbeat()
        worker_metrics_server_start()

    def stop(self, parent: Any) -> None:
        from deliveries.metrics import worker_metrics_server_stop
        from deliveries.services import heartbeat_remove

        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        worker_metrics_server_stop()
        self._safely(heartbeat_remove, name=self.heartbeat_name)

    def heartbeat(self) -> None:
        from deliveries.services import heartbeat_record

        self._safely(heartbeat_record, name=self.heartbeat_name)

    @staticmethod
    def _safely(function: Any, **kwargs: Any) -> None:
        """A heartbeat that fails (database away) is logged; the worker goes on. The main
        process holds no database connection between heartbeats, so none is shared with the
        worker processes it forks."""
        from django.db import connection

        try:
            function(**kwargs)
        except Exception:
            logger.warning("Worker heartbeat not recorded", exc_info=True)
        finally:
            connection.close()


app.steps["worker"].add(WorkerHeartbeat)

_beat_last_heartbeat = 0.0


@beat_init.connect
def beat_stop_on_signal(sender: Any, **kwargs: Any) -> None:
    """Make SIGTERM and SIGINT stop beat for certain. Celery's handler saves the schedule and
    raises SystemExit; beat drops the result object of every task it sends, and when the signal
    is handled while that object's ``__del__`` runs, Python prints the SystemExit and ignores it:
    beat ticked on until its supervisor's SIGKILL. Marking the service as stopping first ends
    its loop at the next pass (at most its max interval) even then."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        celery_handler = signal.getsignal(signum)
        if not callable(celery_handler):
            continue

        def handler(signum: int, frame: Any, celery_handler: Any = celery_handler) -> None:
            sender.stop(wait=False)
            celery_handler(signum, frame)

        signal.signal(signum, handler)


@beat_init.connect
def _beat_heartbeat_connect(**kwargs: Any) -> None:
    """In the beat process only: note ``beat`` alive as it sends its periodic tasks."""
    after_task_publish.connect(_beat_heartbeat, weak=False)


def _beat_heartbeat(**kwargs: Any) -> None:
    """At most every ``WEBHOOKS_HEARTBEAT_SECONDS``; a failure is logged, beat goes on."""
    global _beat_last_heartbeat
    from django.conf import settings

    from deliveries.services.heartbeats import BEAT, heartbeat_record

    now = time.monotonic()
    if now - _beat_last_heartbeat < settings.WEBHOOKS_HEARTBEAT_SECONDS:
        return
    _beat_last_heartbeat = now
    try:
        heartbeat_record(name=BEAT)
    except Exception:
        logger.warning("Beat heartbeat not recorded", exc_info=True)
