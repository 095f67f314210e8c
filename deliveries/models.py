"""How an event got to a subscriber: one Delivery per (event, subscription), one row per attempt."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from webhook_engine.errors import ErrorKind

# The engine's error kinds (``webhook_engine.errors``) as the choices of the models' columns,
# named in the admin's language.
ERROR_KIND_CHOICES = [
    (ErrorKind.NONE.value, _("None")),
    (ErrorKind.HTTP_STATUS.value, _("HTTP error status")),
    (ErrorKind.REDIRECT.value, _("Redirect (not followed)")),
    (ErrorKind.TIMEOUT.value, _("Timeout")),
    (ErrorKind.CONNECTION.value, _("Connection failed")),
    (ErrorKind.DNS.value, _("DNS lookup failed")),
    (ErrorKind.TLS.value, _("TLS error")),
    (ErrorKind.BLOCKED.value, _("Destination not allowed")),
    (ErrorKind.INVALID_URL.value, _("Invalid URL")),
    (ErrorKind.RESPONSE.value, _("Malformed response")),
    (ErrorKind.INTERRUPTED.value, _("Attempt interrupted")),
    (ErrorKind.DISABLED.value, _("Webhook disabled")),
    (ErrorKind.TEMPLATE.value, _("Body template error")),
    (ErrorKind.CONFIGURATION.value, _("Configuration error")),
    (ErrorKind.INTERNAL.value, _("Internal error")),
]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class DeliveryState(models.TextChoices):
    """What every page calls a delivery's state: its status, with a pending delivery whose last
    attempt failed called "retrying" (``delivery_state``)."""

    PENDING = "pending", _("Pending")
    RETRYING = "retrying", _("Retrying")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


def delivery_state(status: str, last_error_kind: str) -> DeliveryState:
    """The one word for where a delivery is: ``pending`` (waiting for its first attempt, or a
    "send now"), ``retrying`` (an attempt failed, another is scheduled), ``delivered`` or
    ``failed``."""
    if status == DeliveryStatus.PENDING and last_error_kind:
        return DeliveryState.RETRYING
    return DeliveryState(status)


class AttemptTrigger(models.TextChoices):
    AUTOMATIC = "automatic", _("Automatic")
    MANUAL = "manual", _("Sent now by hand")
    TEST = "test", _("Send Test")
    # Sent again once each, in turn within the webhook's limits: "Recover failed deliveries",
    # and the rest of a "send now" selection larger than the webhook's free slots.
    RECOVERY = "recovery", _("Sent again by hand, in turn")


class Delivery(models.Model):
    """One event to one subscription.

    ``body`` holds the exact bytes sent, rendered once at fan-out and identical on every attempt,
    in the webhook's delivery profile of that moment (``profile``), which signs every attempt.
    Retry timing lives here: a pending delivery is due at ``next_attempt_at``; a worker that
    claims it owns it until ``leased_until`` and marks it with its ``lease_token``;
    ``enqueued_at`` is when a task message for it was last sent, so the sweeper can tell a lost
    message from one still waiting in the queue.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column index on the three keys: an index of Meta begins with each of them
    # (school_created, the one-per-event constraint, subscription), and every other one would
    # be written again at each of a delivery's updates.
    school = models.ForeignKey(
        "schools.School",
        verbose_name=_("school"),
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    event = models.ForeignKey(
        "events.Event",
        verbose_name=_("event"),
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
    )
    subscription = models.ForeignKey(
        "subscriptions.Subscription",
        verbose_name=_("webhook"),
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
    )
    event_type = models.CharField(_("event type"), max_length=100)
    is_test = models.BooleanField(_("test delivery"), default=False)
    body = models.BinaryField(_("body"))
    content_type = models.CharField("Content-Type", max_length=100)
    # The delivery profile the body was rendered in: every attempt's headers and signatures are
    # that profile's, so a webhook moved to another profile never sends one profile's body under
    # another's headers (its later events get the new profile).
    profile = models.CharField(
        _("delivery profile"),
        max_length=16,
        default="standard",
        db_default="standard",
        editable=False,
    )
    status = models.CharField(
        _("status"), max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    # What the next attempt is: automatic (the schedule), manual (a retrigger) or a Send Test.
    # Kept on the row, not in the task message, so a re-driven message cannot change it.
    next_trigger = models.CharField(
        _("next attempt's trigger"),
        max_length=16,
        choices=AttemptTrigger.choices,
        default=AttemptTrigger.AUTOMATIC,
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    # Set by a "send now" of a delivery that was waiting for an automatic attempt: when that
    # attempt was due. If the manual attempt fails, the schedule resumes here (redrive.py).
    resume_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When its retry window began, if not at creation: a delivery held while its webhook was
    # paused does not spend its window during the pause (pausing.py).
    retry_window_start_at = models.DateTimeField(null=True, blank=True, editable=False)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_response_status = models.PositiveSmallIntegerField(
        _("last response status"), null=True, blank=True
    )
    last_error_kind = models.CharField(
        _("last error"),
        max_length=16,
        choices=ERROR_KIND_CHOICES,
        blank=True,
        default=ErrorKind.NONE,
    )
    last_error = models.TextField(_("last error message"), blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    # 0 for the delivery fan-out made; a replay of the event to the same webhook is a new
    # delivery numbered one past the highest so far (``services/replay.py``).
    replay_number = models.PositiveIntegerField(
        _("replay number"), default=0, db_default=0, editable=False
    )

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-created_at"]
        permissions = [("retrigger_delivery", "Can retrigger deliveries")]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "subscription", "replay_number"],
                name="delivery_one_per_event_and_subscription",
            ),
            models.CheckConstraint(
                condition=~Q(status="pending") | Q(next_attempt_at__isnull=False),
                name="delivery_pending_has_next_attempt",
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="delivery_created_idx"),
            models.Index(fields=["school", "-created_at"], name="delivery_school_created_idx"),
            models.Index(fields=["subscription", "-created_at"], name="delivery_subscription_idx"),
            models.Index(fields=["status", "-created_at"], name="delivery_status_created_idx"),
            models.Index(fields=["event_type", "-created_at"], name="delivery_type_created_idx"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_due_idx",
            ),
            # In flight: a webhook's concurrency is the count of its leased deliveries.
            models.Index(
                fields=["subscription", "leased_until"],
                condition=Q(status="pending", leased_until__isnull=False),
                name="delivery_leased_idx",
            ),
            # Sent now by hand ("send now"): until a worker takes one up, it holds a slot of
            # its webhook's concurrency all the same (``claim.py``). A handful at most.
            models.Index(
                fields=["subscription"],
                condition=Q(status="pending", next_trigger="manual"),
                name="delivery_sent_now_idx",
            ),
            # Pending with no live message: waiting for their webhook (its concurrency, rate or
            # circuit breaker), or for a retry too far off for a message. In the order they are
            # taken up (``claim.py``), so taking up the next few reads a few entries, not the
            # webhook's whole backlog.
            models.Index(
                fields=["subscription", "next_attempt_at", "id"],
                condition=Q(status="pending", enqueued_at__isnull=True),
                name="delivery_waiting_in_order_idx",
            ),
            # Pending with a message out: the sweeper finds those whose message was lost among
            # them (redrive.py), a queue's worth, not among every delivery waiting without one.
            models.Index(
                fields=["enqueued_at"],
                condition=Q(status="pending", enqueued_at__isnull=False),
                name="delivery_messaged_idx",
            ),
            # Send Tests not finished: the sweeper fails those a stopped process left behind
            # (redrive.py). A handful at most, whatever the backlog of other deliveries.
            models.Index(
                fields=["created_at"],
                condition=Q(is_test=True, status="pending"),
                name="delivery_test_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        # Language-neutral: the breadcrumbs of every page show it.
        return f"{self.event_type} · {str(self.pk)[:8]}"


class DeliveryAttempt(models.Model):
    """One HTTP attempt of a delivery, as sent and as answered (secrets redacted, body capped)."""

    # Indexed by the (delivery, number) constraint.
    delivery = models.ForeignKey(
        Delivery,
        on_delete=models.CASCADE,
        related_name="attempt_log",
        verbose_name=_("delivery"),
        db_index=False,
    )
    number = models.PositiveIntegerField(_("number"))
    trigger = models.CharField(_("trigger"), max_length=16, choices=AttemptTrigger.choices)
    started_at = models.DateTimeField(_("started at"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    request_url = models.URLField(_("request URL"), max_length=2000)
    request_headers = models.JSONField(_("request headers"), default=dict)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    response_headers = models.JSONField(_("response headers"), default=dict, blank=True)
    response_body = models.TextField(_("response body"), blank=True)
    response_body_truncated = models.BooleanField(_("response body truncated"), default=False)
    error_kind = models.CharField(
        _("error"), max_length=16, choices=ERROR_KIND_CHOICES, blank=True, default=ErrorKind.NONE
    )
    error_message = models.TextField(_("error message"), blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return _("Attempt %(number)s of %(delivery)s") % {
            "number": self.number,
            "delivery": self.delivery_id,
        }

    @property
    def succeeded(self) -> bool:
        return self.error_kind == ErrorKind.NONE


class FanOutRequest(models.Model):
    """One row: when fan-out was last asked for and not yet taken up by a worker.

    Publishing an event asks for fan-out after its commit; only the request that finds no
    fresh one pending sends a task message, and the task clears the request before it reads
    the events awaiting fan-out, so every committed event is seen by a task that starts later.
    A request older than ``FAN_OUT_REQUEST_RESEND_SECONDS`` (``services/fan_out.py``) is sent
    again (its message may have been lost). Milliseconds since the epoch, compared as integers
    on every database.

    ``read_after_ms``: set by a task reading on while events come fast, its promise to read
    the waiting events again: a publish reads it in its insert and, when its commit is done
    within ``FAN_OUT_PROMISE_SECONDS`` (and before this moment, the database's clock), asks
    for nothing after the commit. Whoever takes the request ends it and reads again that
    long after (``services/fan_out.py``); until then a negative number stands in its place,
    which no publish counts on, so that a task that ends or fails first leaves that read to
    the next take.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    requested_at_ms = models.BigIntegerField(null=True, blank=True)
    read_after_ms = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"fan-out requested at {self.requested_at_ms}"


class CircuitState(models.TextChoices):
    CLOSED = "closed", _("Closed: delivering")
    OPEN = "open", _("Open: waiting to probe")
    HALF_OPEN = "half_open", _("Half-open: probing")


class EndpointState(models.Model):
    """How sending to one webhook is going right now: its circuit breaker and its rate budget.

    One row per webhook, written only when something changes (no row: closed, no failures).
    After ``WEBHOOKS_CIRCUIT_FAILURES`` network failures in a row (timeouts, refused or broken
    connections, DNS, TLS) the circuit opens: the webhook's due deliveries wait, without a
    worker, until ``probe_at``, when one of them is sent as a probe. Any answer from the
    receiver closes it; another network failure opens it again for twice as long (up to
    ``WEBHOOKS_CIRCUIT_COOLDOWN_MAX_SECONDS``). ``rate_tokens`` is the token bucket of
    ``Subscription.rate_limit_per_second``, as of ``rate_tokens_at``.
    """

    subscription = models.OneToOneField(
        "subscriptions.Subscription",
        verbose_name=_("webhook"),
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="endpoint_state",
    )
    circuit_state = models.CharField(
        _("circuit"), max_length=16, choices=CircuitState.choices, default=CircuitState.CLOSED
    )
    circuit_changed_at = models.DateTimeField(_("circuit changed at"), null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(_("network failures in a row"), default=0)
    # How many times it opened since the last answer: each cool-down is twice the last.
    opened_count = models.PositiveIntegerField(_("times opened since the last answer"), default=0)
    probe_at = models.DateTimeField(_("next probe at"), null=True, blank=True)
    rate_tokens = models.FloatField(_("rate tokens"), default=0.0)
    rate_tokens_at = models.DateTimeField(_("rate tokens counted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("endpoint state")
        verbose_name_plural = _("endpoint states")
        indexes = [
            models.Index(
                fields=["probe_at"],
                condition=~Q(circuit_state="closed"),
                name="endpoint_probe_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id}: {self.circuit_state}"


class Heartbeat(models.Model):
    """When a periodic part of the deployment last showed it is alive, for ``/metrics``.

    ``beat`` is written by the beat process as it sends its periodic tasks, ``sweeper`` by the
    worker that runs the sweeper, and ``worker:<hostname>`` by each Celery worker every
    ``WEBHOOKS_HEARTBEAT_SECONDS`` (a worker that stops removes its row). Several hosts share
    the table; a row is one upsert on its primary key.
    """

    BEAT = "beat"
    SWEEPER = "sweeper"
    WORKER_PREFIX = "worker:"

    name = models.CharField(max_length=255, primary_key=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} seen at {self.seen_at:%Y-%m-%d %H:%M:%S}"
