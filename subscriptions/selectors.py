"""Reads of the subscriptions app."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from common.sql import fields_in_order, models_from_rows
from events.models import EventType
from webhook_engine.destinations import DestinationPolicy
from webhook_engine.filters import FilterInvalid, filter_compile
from webhook_engine.redaction import secret_forms, url_query_values
from webhook_engine.vendors import PROFILES

from .crypto import SecretUnreadable, headers_decrypt, secret_decrypt, url_decrypt
from .models import SECRET_MASK, SigningSecret, Subscription
from .topics import topic_matches

# What fan-out reads of a webhook: matching (topics, profile, payload filter), rendering the
# body, and whether its deliveries are held (paused).
FAN_OUT_FIELDS = (
    "id",
    "school_id",
    "is_active",
    "paused_at",
    "topics",
    "payload_filter",
    "profile",
    "content_type",
    "body_template",
)


def subscriptions_active_by_school(
    *, school_ids: Iterable[int], versions: Mapping[int, int] | None = None
) -> dict[int, list[Subscription]]:
    """The active subscriptions of each school, by id, in one query.

    Fan-out matches events against them in memory (``Subscription.matches``: topics are glob
    patterns, decided in Python), so many events of one school cost one query. Only the fields
    that fan-out reads are loaded (``FAN_OUT_FIELDS``; any other is read from the database
    when touched): for 10,000 webhooks that halves the time before the first piece is built.

    ``versions``: each school's ``webhooks_version`` as the caller read it (PostgreSQL; see
    ``subscriptions`` migration 0011): a school whose webhooks this process read at that
    version is served from memory, with no query, and only the others are read (and kept).
    The instances served so are shared by the callers of this process: read, not changed.
    """
    school_ids = list(school_ids)
    by_school: dict[int, list[Subscription]] = {}
    if versions is not None and connection.vendor == "postgresql":
        kept = _fan_out_kept(connection.settings_dict["NAME"])
        for school_id in school_ids:
            found_kept = kept.get(school_id)
            if found_kept is not None and found_kept[0] == versions.get(school_id):
                by_school[school_id] = found_kept[1]
                _fan_out_used(kept, school_id)
        school_ids = [school_id for school_id in school_ids if school_id not in by_school]
        if not school_ids:
            return by_school
        read = _active_by_school(school_ids)
        for school_id in school_ids:
            webhooks = read.get(school_id, [])
            if school_id in versions:
                _fan_out_keep(kept, school_id, versions[school_id], webhooks)
            by_school[school_id] = webhooks
        return by_school
    return _active_by_school(school_ids)


def _active_by_school(school_ids: list[int]) -> dict[int, list[Subscription]]:
    by_school: dict[int, list[Subscription]] = {}
    found: Iterable[Subscription]
    if connection.vendor == "postgresql":
        # One fixed statement, loading the same deferred instances as ``only``: building the
        # ORM query cost more than running it, once per fan-out batch.
        with connection.cursor() as cursor:
            cursor.execute(_ACTIVE_BY_SCHOOL, [school_ids])
            found = models_from_rows(Subscription, _FAN_OUT_COLUMNS, cursor.fetchall())
    else:
        found = (
            Subscription.objects.filter(school_id__in=school_ids, is_active=True)
            .only(*FAN_OUT_FIELDS)
            .order_by("id")
        )
    for subscription in found:
        by_school.setdefault(subscription.school_id, []).append(subscription)
    return by_school


# What this process read of schools' webhooks for fan-out, by database: school id -> (its
# ``webhooks_version`` then, its active webhooks). At most ``_FAN_OUT_KEPT_MAX`` webhooks in
# all, a body template counting one more per thousand characters, the schools used longest
# ago dropped first. Forgotten whenever this process connects to a database anew (a restore
# or a fail-over may bring versions back). Fan-out runs in one thread of a process; the lock
# is for any other. The instances are shared by every batch: fan-out must read nothing of
# them but ``FAN_OUT_FIELDS`` (a deferred field loaded once would be kept stale).
_fan_out_kept_by_database: dict[str, dict[int, tuple[int, list[Subscription]]]] = {}
_fan_out_kept_lock = threading.Lock()
_FAN_OUT_KEPT_MAX = 20_000


def _fan_out_kept(database: str) -> dict[int, tuple[int, list[Subscription]]]:
    with _fan_out_kept_lock:
        return _fan_out_kept_by_database.setdefault(database, {})


def _fan_out_used(kept: dict[int, tuple[int, list[Subscription]]], school_id: int) -> None:
    with _fan_out_kept_lock:
        entry = kept.pop(school_id, None)
        if entry is not None:
            kept[school_id] = entry  # the most recently used last


def _fan_out_weight(webhooks: list[Subscription]) -> int:
    return 1 + sum(1 + len(webhook.body_template) // 1000 for webhook in webhooks)


def _fan_out_keep(
    kept: dict[int, tuple[int, list[Subscription]]],
    school_id: int,
    version: int,
    webhooks: list[Subscription],
) -> None:
    weight = _fan_out_weight(webhooks)
    with _fan_out_kept_lock:
        kept.pop(school_id, None)
        if weight > _FAN_OUT_KEPT_MAX:
            return
        kept[school_id] = (version, webhooks)
        total = sum(_fan_out_weight(entry[1]) for entry in kept.values())
        for oldest in list(kept):
            if total <= _FAN_OUT_KEPT_MAX:
                break
            total -= _fan_out_weight(kept.pop(oldest)[1])


def fan_out_kept_forget(**kwargs: object) -> None:
    """Forget the webhooks kept for fan-out (``connection_created``: a new connection may be
    to a database restored or failed over, whose versions can come back)."""
    with _fan_out_kept_lock:
        _fan_out_kept_by_database.clear()


_FAN_OUT_COLUMNS = fields_in_order(Subscription, FAN_OUT_FIELDS)
_ACTIVE_BY_SCHOOL = (
    "SELECT {columns} FROM {table} WHERE school_id = ANY(%s) AND is_active ORDER BY id".format(  # noqa: S608
        columns=", ".join(str(field.column) for field in _FAN_OUT_COLUMNS),
        table=Subscription._meta.db_table,
    )
)


def signing_secrets_active_q(at: dt.datetime | None = None) -> Q:
    """The condition for a signing secret that still signs at ``at`` (now by default)."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=at or timezone.now())


def signing_secrets_active(*, subscription: Subscription) -> QuerySet[SigningSecret]:
    """The secrets a subscription signs with now, newest first."""
    return subscription.signing_secrets.filter(signing_secrets_active_q()).order_by("-created_at")


def signing_secrets_previous_expire_at(*, subscription: Subscription) -> dt.datetime | None:
    """Until when the secrets that are being retired (an expiry set, still in the future) keep
    signing: the latest of their stored expiries, or None when none signs any more (never
    rotated, the grace over, or an unreadable secret stopped at once by its rotation)."""
    expiries = subscription.signing_secrets.filter(
        signing_secrets_active_q(), expires_at__isnull=False
    ).aggregate(latest=Max("expires_at"))
    latest: dt.datetime | None = expiries["latest"]
    return latest


def signing_secret_current(*, subscription: Subscription) -> str:
    """The newest signing secret in clear, for showing it to the school (raises
    ``SecretUnreadable`` if the encryption keys cannot read it)."""
    newest = signing_secrets_active(subscription=subscription).first()
    if newest is None:
        raise SigningSecret.DoesNotExist(f"Webhook {subscription.pk} has no signing secret")
    return secret_decrypt(newest.secret_encrypted)


# The states the admin shows a webhook in (its home page, the list's status filter): disabled
# automatically (``subscription_disable``: after its failures, or a 410), failing now, paused.
# A paused webhook may be failing.
WEBHOOK_DISABLED = Q(is_active=False, disabled_at__isnull=False)
WEBHOOK_FAILING = Q(is_active=True, failing_since__isnull=False)
WEBHOOK_PAUSED = Q(is_active=True, paused_at__isnull=False)


@dataclass(frozen=True)
class WebhooksNeedingAttention:
    """The webhooks the admin's home page names: the first few of each kind, and how many
    there are of each in all."""

    disabled: list[Subscription]  # by school and name
    failing: list[Subscription]  # by school and name
    paused: list[Subscription]  # paused longest first
    disabled_count: int
    failing_count: int
    paused_count: int


def subscriptions_needing_attention(
    *, school_ids: list[int] | None, limit: int
) -> WebhooksNeedingAttention:
    """The webhooks of the given schools (all if None) that were disabled, are failing right
    now, or are paused (their deliveries held): up to ``limit`` of each kind, with their
    schools, and the count of each kind (one query for the three counts)."""
    scoped = Subscription.objects.all()
    if school_ids is not None:
        scoped = scoped.filter(school_id__in=school_ids)
    counts = scoped.aggregate(
        disabled=Count("pk", filter=WEBHOOK_DISABLED),
        failing=Count("pk", filter=WEBHOOK_FAILING),
        paused=Count("pk", filter=WEBHOOK_PAUSED),
    )

    def first(kind: str, condition: Q, *order: str) -> list[Subscription]:
        if not counts[kind]:
            return []
        return list(scoped.filter(condition).select_related("school").order_by(*order)[:limit])

    return WebhooksNeedingAttention(
        disabled=first("disabled", WEBHOOK_DISABLED, "school__name", "name", "id"),
        failing=first("failing", WEBHOOK_FAILING, "school__name", "name", "id"),
        paused=first("paused", WEBHOOK_PAUSED, "paused_at", "id"),
        disabled_count=counts["disabled"],
        failing_count=counts["failing"],
        paused_count=counts["paused"],
    )


def subscriptions_for_school(*, school_id: int) -> QuerySet[Subscription]:
    """A school's subscriptions, by name."""
    return Subscription.objects.filter(school_id=school_id).order_by("name", "id")


def subscription_event_types(*, subscription: Subscription) -> list[str]:
    """The catalog's current event types the webhook receives (its topics match), by key."""
    keys = EventType.objects.filter(deprecated=False).order_by("key").values_list("key", flat=True)
    return [key for key in keys if subscription.matches(key)]


def replay_event_types(*, subscription: Subscription) -> list[str]:
    """The event types whose events can be replayed to the webhook: every catalog type its
    topics match, deprecated ones included (old events of them are still in the log)."""
    keys = EventType.objects.order_by("key").values_list("key", flat=True)
    return [key for key in keys if subscription.matches(key)]


def subscription_filter_samples(*, subscription: Subscription) -> list[tuple[str, bool]]:
    """Whether the sample payload of each current event type the webhook receives passes its
    payload filter, by key: what the settings page shows beside the filter. A filter that does
    not compile passes no sample."""
    try:
        predicate = filter_compile(subscription.payload_filter)
    except FilterInvalid:
        predicate = None
    return [
        (key, predicate is not None and predicate(sample))
        for key, sample in EventType.objects.filter(deprecated=False)
        .order_by("key")
        .values_list("key", "sample_payload")
        if subscription.matches(key)
    ]


def subscription_ids_receiving(
    *, subscriptions: QuerySet[Subscription], event_type: str
) -> list[uuid.UUID]:
    """Ids of the given subscriptions that receive ``event_type``: a topic matches it and the
    profile's vendor has it (patterns are globs, so this is decided in Python over ids, topics
    and profiles only)."""
    return [
        pk
        for pk, topics, profile in subscriptions.values_list("pk", "topics", "profile")
        if topic_matches(topics or [], event_type) and PROFILES[profile].has(event_type)
    ]


def subscription_custom_headers(*, subscription: Subscription) -> dict[str, str]:
    """Every custom header of the webhook with its real value, as deliveries send them: the
    secret ones decrypted (once per process for each ciphertext).

    Raises ``SecretUnreadable`` when the configured keys cannot read the secret values.
    """
    headers = subscription.custom_headers or {}
    secret = headers_decrypt(subscription.custom_headers_encrypted)
    resolved = {}
    for name, value in headers.items():
        if value != SECRET_MASK:
            resolved[name] = value
        elif name in secret:
            resolved[name] = secret[name]
    return resolved


def subscription_url(*, subscription: Subscription) -> str:
    """The URL deliveries go to, query string included (decrypted once per process for each
    ciphertext; ``subscription.url`` has its query values masked).

    Raises ``SecretUnreadable`` when the configured keys cannot read it.
    """
    if subscription.url_encrypted:
        return url_decrypt(subscription.url_encrypted)
    return subscription.url


def _secrets_raw(subscription: Subscription) -> list[str]:
    """The webhook's secret values as set: the basic-auth password, ``user:password`` and its
    base64, the values of secret custom headers, the values of the URL's query string."""
    try:
        values = url_query_values(subscription_url(subscription=subscription))
    except SecretUnreadable:
        values = url_query_values(subscription.url)
    if subscription.custom_headers_encrypted:
        with contextlib.suppress(SecretUnreadable):
            values += headers_decrypt(subscription.custom_headers_encrypted).values()
    if subscription.basic_auth_enabled and subscription.basic_auth_password_encrypted:
        try:
            password = secret_decrypt(subscription.basic_auth_password_encrypted)
        except SecretUnreadable:
            password = ""
        if password:
            credentials = f"{subscription.basic_auth_username}:{password}"
            values += [password, credentials, base64.b64encode(credentials.encode()).decode()]
    return values


def subscription_secret_values(*, subscription: Subscription) -> list[str]:
    """Every form (as is, percent-encoded, JSON-escaped; longest first) of every secret of the
    webhook, as it could come back in an echoed request: what an attempt never keeps. Values
    under four characters are left out: they would hide ordinary text."""
    return secret_forms(_secrets_raw(subscription))


def subscription_hidden_values(*, subscription: Subscription) -> list[str]:
    """``subscription_secret_values`` and the values of every custom header: what someone who
    may not see the webhook's settings (support staff) is never shown."""
    values = _secrets_raw(subscription)
    values += [
        str(value) for value in (subscription.custom_headers or {}).values() if value != SECRET_MASK
    ]
    return secret_forms(values)


def destination_policy() -> DestinationPolicy:
    """The destination policy configured by ``WEBHOOKS_ALLOWED_NETWORKS``."""
    return DestinationPolicy.from_cidrs(settings.WEBHOOKS_ALLOWED_NETWORKS)
