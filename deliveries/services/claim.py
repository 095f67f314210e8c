"""Claiming due deliveries: one conditional UPDATE takes the lease, so a duplicate task message
sends nothing and any number of workers share the rows without sending one twice.

A claim also keeps each webhook within its limits. Under a per-webhook lock (a PostgreSQL
advisory lock held to the end of the transaction, so claims for one webhook never race) it
counts the webhook's deliveries in flight (leased), checks its circuit breaker and its rate
budget, and takes only what fits. The rest is left waiting without a task message
(``enqueued_at`` cleared): the attempts in flight pull it when they finish (``record.py``),
a probe reopens a broken circuit, and the sweeper re-drives what nobody will (``redrive.py``).
Send Test and manual retriggers are asked for by a person: they go whatever the limits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, F, Prefetch, Q, UUIDField, Value, When
from django.utils import timezone

from subscriptions.models import SigningSecret, Subscription
from subscriptions.selectors import signing_secrets_active_q
from webhook_engine.errors import ErrorKind

from ..models import (
    AttemptTrigger,
    CircuitState,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
)
from .fan_out import deliveries_enqueue

# The advisory lock space of per-webhook claims (any int4 that nothing else uses).
_ENDPOINT_LOCK_CLASS = 0x57484B
_BYPASS_LIMITS = frozenset({AttemptTrigger.TEST, AttemptTrigger.MANUAL})


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds the lease on, and the attempt it is about to make."""

    delivery: Delivery
    number: int
    token: uuid.UUID
    started_at: dt.datetime
    trigger: str
    # The webhook's circuit breaker as this claim left it, and its network failures in a row.
    circuit: str = CircuitState.CLOSED
    failures: int = 0

    @property
    def probe(self) -> bool:
        return self.circuit == CircuitState.HALF_OPEN


@dataclass
class ClaimOutcome:
    """What a claim took, and what it left.

    ``waiting``: due deliveries its webhook's limits did not let go now (left without a
    message, see the module docstring); ``retry_at``: when a rate-limited webhook has budget
    again; ``unclaimed``: due deliveries left only because ``capacity`` ran out (their message
    is still the caller's).
    """

    claims: list[Claim] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    retry_at: dt.datetime | None = None
    unclaimed: list[str] = field(default_factory=list)


def deliveries_claim(*, delivery_ids: list[str], capacity: int | None = None) -> ClaimOutcome:
    """Take the lease on the due, unclaimed deliveries among ``delivery_ids`` that their
    webhooks' limits let go now, at most ``capacity`` of them.

    One conditional UPDATE marks the rows this call won with a fresh lease token; any number of
    workers racing for the same rows each win a disjoint set. A row whose previous lease ran out
    without a result gets that lost attempt logged as interrupted. Claims are returned in the
    order of ``delivery_ids``.
    """
    now = timezone.now()
    lease = dt.timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    outcome = ClaimOutcome()
    with transaction.atomic():
        candidates = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=delivery_ids, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .order_by("next_attempt_at", "id")
            .values_list("pk", "subscription_id", "next_trigger")
        )
        if not candidates:
            return outcome
        endpoints = sorted({subscription_id for _pk, subscription_id, _trigger in candidates})
        _endpoints_lock(endpoints)
        plan = _Plan(now=now, lease=lease, endpoints=endpoints)
        for pk, subscription_id, trigger in candidates:
            if capacity is not None and len(plan.chosen) >= capacity:
                outcome.unclaimed.append(str(pk))
            elif trigger in _BYPASS_LIMITS or plan.admits(subscription_id):
                plan.chosen.append(pk)
            else:
                outcome.waiting.append(str(pk))
        outcome.retry_at = plan.retry_at
        token, token_after_lost_lease = uuid.uuid4(), uuid.uuid4()
        if plan.chosen:
            Delivery.objects.filter(pk__in=plan.chosen).update(
                attempts=F("attempts") + 1,
                leased_until=now + lease,
                # A row still under an (expired) lease was claimed by a worker that never
                # finished.
                lease_token=Case(
                    When(leased_until__isnull=True, then=Value(token)),
                    default=Value(token_after_lost_lease),
                    output_field=UUIDField(),
                ),
                last_attempt_at=now,
            )
        if outcome.waiting:
            Delivery.objects.filter(pk__in=outcome.waiting).update(enqueued_at=None)
        plan.states_save()
    if not plan.chosen:
        return outcome
    secrets = SigningSecret.objects.filter(signing_secrets_active_q(now)).order_by("-created_at")
    deliveries = {
        str(delivery.pk): delivery
        for delivery in Delivery.objects.select_related("subscription", "school")
        .prefetch_related(
            Prefetch("subscription__signing_secrets", queryset=secrets, to_attr="active_secrets")
        )
        .filter(pk__in=plan.chosen, lease_token__in=[token, token_after_lost_lease])
    }
    interrupted = [d for d in deliveries.values() if d.lease_token == token_after_lost_lease]
    if interrupted:
        _attempts_interrupted_record(interrupted)
    for delivery_id in delivery_ids:
        delivery = deliveries.get(str(delivery_id))
        if delivery is None:
            continue
        circuit, failures = plan.circuit_of(delivery.subscription_id)
        outcome.claims.append(
            Claim(
                delivery=delivery,
                number=delivery.attempts,
                token=delivery.lease_token or token,
                started_at=now,
                trigger=delivery.next_trigger,
                circuit=circuit,
                failures=failures,
            )
        )
    return outcome


def _endpoints_lock(endpoint_ids: list[uuid.UUID]) -> None:
    """Serialise claims per webhook until the transaction ends (in one order: no deadlock).

    SQLite (the embedded default) runs one writing transaction at a time anyway.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, k) FROM (SELECT DISTINCT hashtext(x::text) AS k "
            "FROM unnest(%s::uuid[]) AS x ORDER BY k) AS keys",
            [_ENDPOINT_LOCK_CLASS, list(endpoint_ids)],
        )


class _Plan:
    """The webhooks of one claim: what each one admits now (read under their locks)."""

    def __init__(self, *, now: dt.datetime, lease: dt.timedelta, endpoints: list[uuid.UUID]):
        self.now = now
        self.lease = lease
        self.chosen: list[uuid.UUID] = []
        self.retry_at: dt.datetime | None = None
        self.limits = {
            pk: (concurrency or settings.WEBHOOKS_ENDPOINT_CONCURRENCY, rate)
            for pk, concurrency, rate in Subscription.objects.filter(pk__in=endpoints).values_list(
                "pk", "max_concurrency", "rate_limit_per_second"
            )
        }
        self.in_flight: dict[uuid.UUID, int] = dict(
            Delivery.objects.filter(
                subscription_id__in=endpoints,
                status=DeliveryStatus.PENDING,
                leased_until__gte=now,
            )
            .values("subscription_id")
            .annotate(count=Count("pk"))
            .values_list("subscription_id", "count")
        )
        self.states = {state.pk: state for state in EndpointState.objects.filter(pk__in=endpoints)}
        self.changed: dict[uuid.UUID, EndpointState] = {}

    def admits(self, endpoint: uuid.UUID) -> bool:
        """Whether one more automatic delivery to ``endpoint`` may go now (and count it)."""
        concurrency, rate = self.limits.get(endpoint, (1, None))
        state = self.states.get(endpoint)
        probing = (
            state if state is not None and state.circuit_state != CircuitState.CLOSED else None
        )
        if probing is not None:
            # Open, or a probe in flight: only one probe, once its time has come.
            if probing.probe_at is not None and probing.probe_at > self.now:
                return False
            concurrency = 1
        if self.in_flight.get(endpoint, 0) >= concurrency:
            return False
        if rate is not None and not self._rate_take(endpoint, rate):
            return False
        if probing is not None:
            probing.circuit_state = CircuitState.HALF_OPEN
            probing.probe_at = self.now + self.lease  # another probe if this one never reports
            self.changed[endpoint] = probing
        self.in_flight[endpoint] = self.in_flight.get(endpoint, 0) + 1
        return True

    def _rate_take(self, endpoint: uuid.UUID, rate: int) -> bool:
        """Take one token of the webhook's bucket (``rate`` per second, bursts of ``rate``)."""
        state = self.states.get(endpoint)
        if state is None:
            state = self.states[endpoint] = EndpointState(
                subscription_id=endpoint, rate_tokens=float(rate), rate_tokens_at=self.now
            )
        elapsed = (self.now - (state.rate_tokens_at or self.now)).total_seconds()
        tokens = min(float(rate), state.rate_tokens + max(0.0, elapsed) * rate)
        state.rate_tokens_at = self.now
        self.changed[endpoint] = state
        if tokens < 1.0:
            state.rate_tokens = tokens
            ready = self.now + dt.timedelta(seconds=(1.0 - tokens) / rate)
            self.retry_at = ready if self.retry_at is None else min(self.retry_at, ready)
            return False
        state.rate_tokens = tokens - 1.0
        return True

    def circuit_of(self, endpoint: uuid.UUID) -> tuple[str, int]:
        state = self.states.get(endpoint)
        if state is None:
            return CircuitState.CLOSED, 0
        return state.circuit_state, state.consecutive_failures

    def states_save(self) -> None:
        """Write the breakers and buckets this claim changed (none on the usual path)."""
        if not self.changed:
            return
        EndpointState.objects.bulk_create(
            list(self.changed.values()),
            update_conflicts=True,
            unique_fields=["subscription"],
            update_fields=[
                "circuit_state",
                "circuit_changed_at",
                "probe_at",
                "rate_tokens",
                "rate_tokens_at",
            ],
        )


def _attempts_interrupted_record(deliveries: list[Delivery]) -> None:
    """Log the attempts whose worker stopped before recording them (the number before this one);
    a record that the late worker did write is kept."""
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=delivery,
                number=delivery.attempts - 1,
                trigger=AttemptTrigger.AUTOMATIC,
                started_at=delivery.last_attempt_at or timezone.now(),
                request_url=delivery.subscription.url,
                error_kind=ErrorKind.INTERRUPTED,
                error_message="The worker stopped before this attempt finished; it was retried.",
            )
            for delivery in deliveries
        ],
        ignore_conflicts=True,
    )


def deliveries_requeue_early(*, delivery_ids: list[str]) -> None:
    """Messages that arrive just before their delivery is due (clock skew) are sent again."""
    if not delivery_ids:
        return
    now = timezone.now()
    horizon = now + dt.timedelta(seconds=settings.WEBHOOKS_COUNTDOWN_MAX_SECONDS)
    early = Delivery.objects.filter(
        pk__in=delivery_ids,
        status=DeliveryStatus.PENDING,
        next_attempt_at__gt=now,
        next_attempt_at__lte=horizon,
        leased_until__isnull=True,
    ).values_list("pk", "next_attempt_at")
    for delivery_id, due in early:
        if due is not None:
            deliveries_enqueue([delivery_id], countdown=(due - now).total_seconds())
