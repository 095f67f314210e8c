"""What an operator relies on: task retries, the warm shutdown, /health/ with a hung broker,
settings checked at start."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from celery import current_app
from celery.exceptions import Retry
from django.db import OperationalError, connection
from django.test import Client

from deliveries import tasks
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import deliveries_sweep, event_fan_out
from deliveries.services import dispatch as dispatch_module
from deliveries.services.dispatch import Dispatcher
from events.models import Event
from events.services import event_publish
from faults.harness import PrivateRedis
from tests.processes import ROOT, process_env
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory
from tests.test_deploy_check import check_deploy, readme_deploy_environment


def test_the_prune_task_retries_itself_when_the_database_is_unreachable(monkeypatch):
    """As every other task of deliveries/tasks.py: a database restart at the hourly tick is a
    retry a second later, not a failed task acknowledged and an hour without pruning."""

    def unreachable(**kwargs):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(tasks.services, "deliveries_prune", unreachable)

    with pytest.raises(Retry) as retry:
        tasks.prune.apply(throw=True)
    assert retry.value.when <= 2


@pytest.mark.django_db(transaction=True)
def test_a_warm_shutdown_records_what_is_in_flight_without_taking_up_more(
    school, receiver, settings, monkeypatch
):
    """The worker's shutdown signal drains this process's dispatcher. What was in flight when
    it began is answered and recorded; the drain must not go on claiming the deliveries that
    wait behind a busy webhook (the sweeper or another worker sends those), else it only ends
    at its timeout, and the process exits with an attempt sent and never recorded (sent again
    once its lease runs out: the receiver gets it twice)."""
    settings.WEBHOOKS_TIMEOUT_SECONDS = 1.0  # the drain waits 1 + 5 s
    receiver.script("/busy", default=Reply(status=200, delay_seconds=0.5))
    SubscriptionFactory(school=school, url=receiver.url("/busy"), max_concurrency=1, topics=["*"])
    ids = []
    for number in range(20):  # 10 s of work, one at a time
        event = event_publish(
            school=school, type="course.created", data={"course": {"id": f"c{number}"}}
        )
        ids += [str(pk) for pk in event_fan_out(event_id=event.id)]
    engine = Dispatcher(slots=4)
    monkeypatch.setattr(dispatch_module, "_dispatchers", {os.getpid(): engine})
    try:
        assert engine.dispatch(ids) == 1  # one in flight, the rest wait behind it

        started = time.monotonic()
        tasks._deliveries_in_flight_finish(signal=None, sender=None)  # the warm shutdown
        took = time.monotonic() - started
        with engine._lock:
            in_flight = engine._in_flight
    finally:
        engine.stop(timeout=15)

    sent = len(receiver.received("/busy"))
    recorded = Delivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.PENDING).count()
    assert in_flight == 0, f"{in_flight} attempt(s) still in flight after {took:.1f} s"
    assert took < 2.0
    assert (sent, recorded) == (1, 1)
    # What waited behind it is not lost: with nothing of the webhook in flight, the sweeper
    # sends the next one (and its attempt takes up the rest).
    assert deliveries_sweep().deliveries_enqueued == 1


@pytest.mark.django_db(transaction=True)
def test_health_answers_503_within_seconds_when_the_broker_does_not_answer(catalog, monkeypatch):
    """A broker that takes the connection and never answers (a hung Redis, a partition after
    the handshake): the check gives up after its 2 s and /health/ says so, instead of holding
    the request, and a web thread, for as long as the broker hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept_and_say_nothing():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    port = listener.getsockname()[1]
    monkeypatch.setattr(current_app.conf, "broker_write_url", f"redis://127.0.0.1:{port}/0")
    answers = []

    def probe():
        try:
            answers.append(Client().get("/health/"))
        finally:
            connection.close()

    started = time.monotonic()
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(15)
    took = time.monotonic() - started
    answered_in_time = bool(answers)
    listener.close()  # a hung check, if any, ends
    for sock in accepted:
        sock.close()
    thread.join(5)

    assert answered_in_time, f"/health/ had not answered after {took:.0f} s"
    assert took < 10
    assert answers[0].status_code == 503
    assert answers[0].json()["broker"].startswith("unreachable")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOKS_ALLOWED_NETWORKS", "10.0.0.0/33"),
        ("WEBHOOKS_ALLOWED_NETWORKS", "10.0.0.0/8,intranet"),
        ("DATABASE_URL", "postgres//webhooks@db.school.example/webhooks"),
        ("DATABASE_URL", "postgres://webhooks@db.school.example:five432/webhooks"),
        ("DJANGO_LOG_LEVEL", "verbose"),
        ("WEBHOOKS_SEND_THREADS", "0"),
        ("WEBHOOKS_DELIVERY_BATCH_SIZE", "-1"),
        ("WEBHOOKS_LEASE_SECONDS", "0"),
        ("WEBHOOKS_SWEEP_INTERVAL_SECONDS", "0"),
        ("CELERY_BROKER_SOCKET_TIMEOUT", "0.5"),
        ("WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS", "-3600"),
        ("DATABASE_WORKER_PREPARE_THRESHOLD", "-1"),
        ("DATABASE_WORKER_PREPARE_THRESHOLD", "often"),
    ],
)
def test_a_bad_value_is_refused_at_start_naming_its_variable(variable, value):
    """As WEBHOOKS_METRICS_ALLOWED_NETWORKS is: one ImproperlyConfigured line that names the
    variable when the process starts, not a traceback from inside a library (or, for the
    allowed networks, a clean start, then every attempt and every webhook saved failing)."""
    result = check_deploy({**readme_deploy_environment(), variable: value})

    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: " + variable), last
    assert "<password>" not in result.stderr  # a database URL's password is not echoed


_PUBLISHER = """
import sys, time
import django
django.setup()
from django.db import transaction
from celery import current_app
from events.services import event_publish
from schools.models import School

school = School.objects.get(pk=int(sys.argv[1]))
with current_app.connection_for_write() as broker:
    broker.ensure_connection(max_retries=1)
print("ready", flush=True)
sys.stdin.readline()  # the test stops the broker, then says go
for number in range(2):
    started = time.monotonic()
    with transaction.atomic():
        event = event_publish(school=school, type="course.created", data={"course": {"id": "c"}})
    print(f"published {event.id} in {time.monotonic() - started:.2f}", flush=True)
"""


@pytest.mark.django_db(transaction=True)
def test_publishing_gives_up_on_a_broker_that_stopped_answering(school):
    """A web process publishes an event, and Redis has stopped answering (paused, swapped out,
    a partition after the connection was made). The event is committed, so the request must
    not wait on the broker for as long as it hangs: it gives up within seconds and the
    sweeper fans the event out. Publishes right after it do not each wait again."""
    redis = PrivateRedis()  # its own, on a port of its own: stopping it harms no one
    publisher = None
    try:
        redis.start()
        publisher = subprocess.Popen(
            [sys.executable, "-c", _PUBLISHER, str(school.pk)],
            cwd=ROOT,
            env=process_env(CELERY_BROKER_URL=redis.url),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert publisher.stdout.readline().strip() == "ready"
        os.kill(redis.process.pid, signal.SIGSTOP)
        publisher.stdin.write("go\n")
        publisher.stdin.flush()
        lines = _lines_within(publisher, count=2, seconds=30)
    finally:
        if publisher is not None:
            publisher.kill()
            publisher.wait()
        if redis.process is not None:
            os.kill(redis.process.pid, signal.SIGCONT)
        redis.kill()

    assert len(lines) == 2, f"the publisher was still waiting on the broker after 30 s: {lines}"
    took = [float(line.split()[-1]) for line in lines]
    assert took[0] < 12, lines
    assert took[1] < 1, lines
    stored = Event.objects.filter(fanned_out_at__isnull=True).count()
    assert stored == 2  # committed, waiting for the sweeper


def _lines_within(process: subprocess.Popen, *, count: int, seconds: float) -> list[str]:
    """The ``published`` lines ``process`` prints within ``seconds``."""
    lines: list[str] = []

    def read():
        for line in process.stdout:
            if line.startswith("published"):
                lines.append(line.strip())
                if len(lines) == count:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    return list(lines)


@pytest.mark.django_db(transaction=True)
def test_publishing_while_the_broker_is_down_says_so_in_one_line(school):
    """Every publish (each POST /api/v1/events/) while Redis is down logs that its fan-out
    could not be asked for: one line with the cause, not a 60-line traceback per request."""
    published = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "publish_event",
            "--school",
            school.slug,
            "--type",
            "course.created",
            "--data",
            '{"course": {"id": "c1"}}',
        ],
        cwd=ROOT,
        env=process_env(CELERY_BROKER_URL="redis://127.0.0.1:1/0"),  # nothing listens there
        capture_output=True,
        text=True,
        check=False,
    )

    assert published.returncode == 0, published.stderr
    [line] = [line for line in published.stderr.splitlines() if line.strip()]
    assert "Could not enqueue fan-out" in line
    assert "Connection refused" in line
    assert Event.objects.filter(fanned_out_at__isnull=True).count() == 1  # for the sweeper


# The SystemExit ignored in the finaliser is the case under test; Python reports it as it would.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_beat_stops_even_when_its_sigterm_lands_in_a_finaliser(tmp_path):
    """Beat drops the result object of each task it sends. Celery's SIGTERM handler raises
    SystemExit; when the signal is handled while such an object's ``__del__`` runs, Python prints
    the exception and ignores it, and beat would tick on until a supervisor's SIGKILL."""
    from celery.apps.beat import Beat
    from celery.beat import Service

    from webhooks_project.celery import beat_stop_on_signal

    service = Service(
        app=current_app,
        scheduler_cls="celery.beat:PersistentScheduler",
        schedule_filename=str(tmp_path / "schedule"),
    )
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        # Given beat's handlers, Celery's and ours, installed as `celery beat` installs them
        Beat(app=current_app).install_sync_handler(service)
        beat_stop_on_signal(sender=service)

        # When SIGTERM is handled inside a finaliser
        class Dropped:
            def __del__(self) -> None:
                signal.raise_signal(signal.SIGTERM)

        Dropped()

        # Then the SystemExit went nowhere, but beat's loop ends at its next pass
        assert service._is_shutdown.is_set()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
