"""Writes of the subscriptions app: validated saves, secrets, disabling and re-enabling."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import secrets
import socket
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from celery import current_app
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from audit.models import AuditAction
from audit.services import Actor, audit_record
from common.transactions import after_commit
from events.models import EventType
from schools.models import School
from schools.selectors import school_admin_emails
from webhook_engine.bodies import BodyTemplateError
from webhook_engine.destinations import DestinationBlocked, url_check
from webhook_engine.envelope import envelope_build
from webhook_engine.filters import filter_errors, filter_schema_errors
from webhook_engine.headers import (
    header_name_looks_secret,
    header_name_problem,
    header_value_problem,
)
from webhook_engine.redaction import url_query_mask, url_query_secret, url_query_unmask
from webhook_engine.render import (
    CONTENT_TYPES,
    SAMPLE_UNIX_TIMESTAMP,
    body_check_samples,
    render_with_template,
)
from webhook_engine.vendors import PRODUCT_HEADER_PREFIXES, PROFILES, STANDARD

from .crypto import (
    SecretUnreadable,
    headers_decrypt,
    headers_encrypt,
    secret_decrypt,
    secret_encrypt,
    secret_reencrypt,
    url_decrypt,
)
from .models import EDITABLE_FIELDS, SECRET_MASK, STATE_FIELDS, SigningSecret, Subscription
from .selectors import (
    destination_policy,
    signing_secret_current,
    signing_secrets_active,
    signing_secrets_active_q,
    signing_secrets_previous_expire_at,
    subscription_custom_headers,
    subscription_url,
)
from .topics import is_pattern, topic_matches, topic_pattern_errors

logger = logging.getLogger(__name__)

_fresh_start_hook: Callable[[uuid.UUID], object] | None = None


def subscription_fresh_start_hook_set(hook: Callable[[uuid.UUID], object] | None) -> None:
    """Register the callable run, with the webhook's id, after the commit of a change that
    starts a webhook afresh: its URL changed, or it was turned back on. Its failure streak is
    forgotten here; the app that sends to it forgets what it counted of the old receiver.

    Called once at start-up by that app (``deliveries``: the circuit breaker's failures). It
    must not raise (a failure is logged). ``None`` removes it.
    """
    global _fresh_start_hook
    _fresh_start_hook = hook


def _fresh_start_announce(subscription_id: uuid.UUID) -> None:
    if _fresh_start_hook is not None:
        after_commit(_fresh_start_hook, subscription_id)


SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
MAX_CUSTOM_HEADERS = 20
URL_MAX_CHARACTERS = 2000
# Headers the product sets itself, or that would break or smuggle the request.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "cookie",
        "expect",
        "host",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
    }
)
RESERVED_HEADER_PREFIXES = PRODUCT_HEADER_PREFIXES


def signing_secret_generate() -> str:
    """A new Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def subscription_topics_errors(topics: object) -> list[str]:
    """What is wrong with a list of topic patterns, checked against the event catalog."""
    return topic_pattern_errors(topics, EventType.objects.values_list("key", flat=True))


def subscription_url_errors(url: str) -> list[str]:
    """Why webhooks cannot be sent to this URL (scheme, host, and every address it resolves to)."""
    try:
        url_check(url, destination_policy())
    except ValueError as exc:
        return [str(exc)]
    except DestinationBlocked as exc:
        return [exc.message()]
    except socket.gaierror:
        return [_("The host name could not be resolved; check the URL.")]
    return []


def custom_headers_errors(headers: object) -> list[str]:
    """What is wrong with a custom headers mapping (name: value): names and values as RFC 9110
    allows them (``webhook_engine.headers``), no header the webhook sets itself, none twice."""
    if not isinstance(headers, dict):
        return [_("Give the headers as an object of name: value.")]
    errors = []
    if len(headers) > MAX_CUSTOM_HEADERS:
        errors.append(_("Use at most %(limit)s custom headers.") % {"limit": MAX_CUSTOM_HEADERS})
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str):
            errors.append(_("%(name)s is not a valid header name.") % {"name": repr(name)})
            continue
        lowered = name.lower()
        problem = header_name_problem(name)
        if problem:
            errors.append(problem)
        elif lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIXES):
            errors.append(
                _(
                    "%(name)s is set by the webhook itself and cannot be a custom header (use "
                    "basic authentication for credentials)."
                )
                % {"name": name}
                if lowered == "authorization"
                else _("%(name)s is set by the webhook itself and cannot be a custom header.")
                % {"name": name}
            )
        elif lowered in seen:
            errors.append(_("%(name)s is given twice.") % {"name": name})
        seen.add(lowered)
        if not isinstance(value, str):
            errors.append(_("The value of %(name)s must be text.") % {"name": name})
        elif problem is None and (value_problem := header_value_problem(name, value)):
            errors.append(value_problem)
    return errors


def subscription_profile_errors(
    *, profile: str, topics: object, content_type: str, body_template: str
) -> dict[str, list[str]]:
    """Why the settings cannot go with the delivery profile, by field.

    A vendor profile sends the vendor's own body (so no body template) in the vendor's content
    type, and only the vendor's events: an event type the vendor lacks cannot be a topic, and a
    pattern must match at least one of the vendor's events (the webhook then receives those it
    matches). The edudip profile needs the platform's ECDSA key.
    """
    vendor = PROFILES.get(profile)
    if vendor is None:
        choices = ", ".join(PROFILES)
        return {
            "profile": [
                _("%(profile)s is not a delivery profile; choose one of %(choices)s.")
                % {"profile": repr(profile), "choices": choices}
            ]
        }
    if vendor.key == STANDARD or vendor.events is None:
        return {}
    label = vendor.label
    errors: dict[str, list[str]] = {}
    if body_template.strip():
        errors["body_template"] = [
            _(
                "The %(vendor)s profile sends %(vendor)s's own body: clear the webhook body, or "
                "choose the Standard Webhooks profile for a body of your own."
            )
            % {"vendor": label}
        ]
    if content_type not in vendor.content_types:
        errors["content_type"] = [
            _(
                "%(vendor)s sends JSON only: choose JSON, or the Standard Webhooks or BrainCert "
                "profile for XML."
            )
            % {"vendor": label}
        ]
    if isinstance(topics, list):
        known = set(EventType.objects.values_list("key", flat=True))
        vendor_types = sorted(key for key in vendor.events if key in known)
        for topic in topics:
            if not isinstance(topic, str):
                continue
            if not is_pattern(topic):
                if topic in known and topic not in vendor_types:
                    errors.setdefault("topics", []).append(
                        _(
                            "%(vendor)s has no event for %(topic)s: remove it, or choose the "
                            "Standard Webhooks profile."
                        )
                        % {"vendor": label, "topic": topic}
                    )
            elif not any(topic_matches([topic], key) for key in vendor_types):
                errors.setdefault("topics", []).append(
                    _("%(topic)s matches none of %(vendor)s's events (%(events)s).")
                    % {"topic": repr(topic), "vendor": label, "events": ", ".join(vendor_types)}
                )
    if vendor.needs_ecdsa_key and not settings.WEBHOOKS_ECDSA_KEY:
        errors["profile"] = [
            _(
                "The %(vendor)s profile signs with the platform's ECDSA key, and none is "
                "configured (WEBHOOKS_ECDSA_KEY)."
            )
            % {"vendor": label}
        ]
    return errors


def secret_headers_errors(secret_headers: object, headers: object) -> list[str]:
    """What is wrong with the names of the headers marked secret: each must be a custom header."""
    if not isinstance(secret_headers, list) or not all(
        isinstance(name, str) for name in secret_headers
    ):
        return [_("Give the secret headers as a list of header names.")]
    names = {str(name).lower() for name in headers} if isinstance(headers, dict) else set()
    return [
        _("%(name)s is marked secret but is not one of the custom headers.") % {"name": name}
        for name in secret_headers
        if name.lower() not in names
    ]


def header_is_secret(name: str, secret_headers: list[str]) -> bool:
    """Whether a custom header's value is secret: marked so, or named like a credential."""
    return header_name_looks_secret(name) or name.lower() in {
        str(marked).lower() for marked in secret_headers or []
    }


def _custom_headers_resolve(subscription: Subscription) -> tuple[dict[str, str], list[str]]:
    """The webhook's custom headers with their real values, and what stops that: a value given
    as ``SECRET_MASK`` keeps the stored secret value of that header."""
    headers = subscription.custom_headers
    if not isinstance(headers, dict) or SECRET_MASK not in headers.values():
        return headers, []
    try:
        stored = headers_decrypt(subscription.custom_headers_encrypted)
    except SecretUnreadable:
        return headers, [
            _(
                "The stored secret header values cannot be decrypted with "
                "WEBHOOKS_ENCRYPTION_KEYS; enter them again."
            )
        ]
    resolved: dict[str, str] = {}
    errors = []
    for name, value in headers.items():
        if value == SECRET_MASK:
            if name in stored:
                resolved[name] = stored[name]
            else:
                errors.append(
                    _("%(name)s has no stored value to keep; enter its value.") % {"name": name}
                )
        else:
            resolved[name] = value
    return resolved, errors


def _url_resolve(subscription: Subscription) -> tuple[str, list[str]]:
    """The webhook's URL as it is to be used, and what stops that: a query value given as
    ``SECRET_MASK`` keeps the stored value of that parameter."""
    url = str(subscription.url or "")
    if SECRET_MASK not in unquote_plus(url):
        return url, []
    try:
        stored = url_decrypt(subscription.url_encrypted) if subscription.url_encrypted else ""
    except SecretUnreadable:
        return url, [
            _("The stored URL cannot be decrypted with WEBHOOKS_ENCRYPTION_KEYS; enter it again.")
        ]
    resolved, missing = url_query_unmask(url, stored, SECRET_MASK)
    return resolved, [
        _("The query parameter %(name)s has no stored value to keep; enter its value.")
        % {"name": name}
        for name in missing
    ]


def subscription_body_errors(
    *, body_template: str, content_type: str, topics: list[str], school: School
) -> list[str]:
    """Problems of a body template, rendered against the sample payload of every selected type."""
    if not body_template.strip():
        return []
    samples = []
    for event_type in EventType.objects.filter(deprecated=False).order_by("key"):
        if topic_matches(topics, event_type.key):
            samples.append((event_type.key, body_sample_envelope(event_type, school)))
    return body_check_samples(body_template, content_type, samples)[:3]


def subscription_payload_filter_errors(*, subscription: Subscription) -> list[str]:
    """Every problem of the webhook's payload filter: its shape (``webhook_engine.filters``),
    then each condition against the JSON Schema and sample of every current event type the
    webhook receives (a field none of them has, a value its field can never have)."""
    payload_filter = subscription.payload_filter
    errors = filter_errors(payload_filter)
    if errors or not payload_filter:
        return errors
    event_types = {
        event_type.key: (event_type.json_schema, event_type.sample_payload)
        for event_type in EventType.objects.filter(deprecated=False).order_by("key")
        if subscription.matches(event_type.key)
    }
    return filter_schema_errors(payload_filter, event_types)


def body_sample_envelope(event_type: EventType, school: School) -> dict[str, Any]:
    """The envelope a school would get for an event type's sample payload."""
    return envelope_build(
        event_id=str(uuid.UUID(int=0)),
        event_type=event_type.key,
        school_id=school.pk or 0,
        school_slug=school.slug,
        occurred_at=timezone.now(),
        data=event_type.sample_payload,
        tz=school.tzinfo,
    )


def subscription_validate(subscription: Subscription, *, password_given: bool) -> None:
    """Raise ``ValidationError`` with a field map for everything ``subscription_save`` refuses.

    For forms that show the errors before saving; ``subscription_save`` calls it itself.
    """
    errors: dict[str, list[str]] = {}

    def add(field: str, messages: list[str]) -> None:
        if messages:
            errors.setdefault(field, []).extend(messages)

    try:
        # The profile is checked below, with the settings it constrains and clearer words than
        # its database constraints'.
        subscription.full_clean(
            exclude=["basic_auth_password_encrypted", "url_encrypted", "profile"]
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    add("topics", subscription_topics_errors(subscription.topics))
    for field, messages in subscription_profile_errors(
        profile=subscription.profile,
        topics=subscription.topics if "topics" not in errors else None,
        content_type=subscription.content_type,
        body_template=subscription.body_template,
    ).items():
        add(field, messages)
    url, url_errors = _url_resolve(subscription)
    add("url", url_errors)
    if "url" not in errors:
        add("url", subscription_url_errors(url))
    if "url" not in errors and len(url_query_mask(url, SECRET_MASK)) > URL_MAX_CHARACTERS:
        add(
            "url",
            [
                _("With its query values masked the URL is longer than %(limit)s.")
                % {"limit": URL_MAX_CHARACTERS}
            ],
        )
    headers, resolve_errors = _custom_headers_resolve(subscription)
    add("custom_headers", resolve_errors or custom_headers_errors(headers))
    add("secret_headers", secret_headers_errors(subscription.secret_headers, headers))
    if subscription.basic_auth_enabled:
        if not subscription.basic_auth_username:
            add("basic_auth_username", [_("Enter the username for basic authentication.")])
        elif ":" in subscription.basic_auth_username:
            add("basic_auth_username", [_("A basic-authentication username cannot contain ':'.")])
        if not password_given and not subscription.basic_auth_password_encrypted:
            add("basic_auth_password", [_("Enter the password for basic authentication.")])
    if subscription.sign_ed25519 and not settings.WEBHOOKS_ED25519_KEYS:
        add(
            "sign_ed25519",
            [_("The platform has no Ed25519 key configured (WEBHOOKS_ED25519_KEYS).")],
        )
    if "topics" not in errors and "profile" not in errors:
        add("payload_filter", subscription_payload_filter_errors(subscription=subscription))
    if "topics" not in errors and "body_template" not in errors and subscription.school_id:
        add(
            "body_template",
            subscription_body_errors(
                body_template=subscription.body_template,
                content_type=subscription.content_type,
                topics=subscription.topics,
                school=subscription.school,
            ),
        )
    if errors:
        raise ValidationError(errors)


def subscriptions_refused() -> list[tuple[Subscription, dict[str, list[str]]]]:
    """Every stored webhook that ``subscription_validate`` refuses as it stands, with the
    messages by field, ordered by school and name: settings an earlier release accepted
    that the current rules do not (a header name over the limit, a header value HTTP cannot
    carry, an XML template declaring another encoding than UTF-8, a URL port of 0, ...).

    Read-only: nothing is changed or saved. The checks are those of a save, the URL's name
    resolution included, so a host that does not resolve now is listed too. Messages are in
    the active language.
    """
    refused = []
    for subscription in Subscription.objects.select_related("school").order_by(
        "school__slug", "name", "pk"
    ):
        try:
            subscription_validate(subscription, password_given=False)
        except ValidationError as exc:
            refused.append((subscription, exc.message_dict))
    return refused


@transaction.atomic
def subscription_save(
    *,
    subscription: Subscription,
    basic_auth_password: str | None = None,
    actor: Actor | None = None,
    signing_secret: str | None = None,
    checked: bool = False,
    version: str | None = None,
) -> Subscription:
    """Validate and save a new or changed subscription; a new one gets its signing secret.

    ``basic_auth_password`` replaces the stored password when given (``None`` keeps it); it is
    stored encrypted. Turning basic authentication off forgets the username and password.
    Custom headers marked secret (``secret_headers``) or named like a credential have their
    values stored encrypted, and read ``SECRET_MASK`` in ``custom_headers``; a header
    given with that mask as its value keeps its stored value. A URL with a query string is
    stored encrypted too, and reads with each query value masked in ``url``; a value given as
    the mask keeps the stored one.

    Raises ``ValidationError`` with a field map: an invalid field, a name another webhook of the
    school has (also when it took the name while this one was being checked), a topic that
    matches no event type, a destination that is not allowed or does not resolve, a reserved or
    malformed custom header, or a body template that fails for the sample payload of a selected
    event type. Raises ``Subscription.DoesNotExist`` for a change to a webhook that was deleted
    meanwhile (nothing is written).

    A change keeps the webhook's state (disabled, failing since, paused, catching up) as the
    locked row has it, not as the caller read it; turning a disabled webhook back on forgets
    why it was off and its failure streak, and so does a new URL (the failures were the old
    receiver's); either tells the sending app after commit (``subscription_fresh_start_hook_set``).

    ``version``: the ``subscription_settings_version`` of the settings the change was made
    from (a form's page); if the stored settings are no longer those (another person changed
    them, or the webhook was disabled), nothing is written and ``ValidationError`` says so
    (``settings_changed_message``): a page opened before would write them back.

    A new subscription signs with ``signing_secret`` when given (the secret a Send Test on the
    unsaved settings already used), else with a new one. The change is in the audit trail with
    the fields that changed (a password or header value as "changed", never its value); a
    change that changes nothing writes nothing (``updated_at`` and the audit trail stay).
    """
    password_given = bool(basic_auth_password)
    if not checked:  # ``checked``: the caller just validated these very settings
        subscription_validate(subscription, password_given=password_given)
    created = subscription._state.adding
    before = {}
    afresh = False
    if not created:
        # Locked: a webhook another request deletes meanwhile raises DoesNotExist here rather
        # than being written back (an update of no row becomes an insert) without its signing
        # secrets.
        current = Subscription.objects.select_for_update(of=("self",)).get(pk=subscription.pk)
        if version is not None and version != subscription_settings_version(current):
            raise ValidationError({NON_FIELD_ERRORS: [settings_changed_message()]})
        before = _audited_fields(current)
        hidden_before = _audited_secret_values(current)
        afresh = _state_keep(subscription, current)
    if not subscription.basic_auth_enabled:
        subscription.basic_auth_username = ""
        subscription.basic_auth_password_encrypted = ""
    elif password_given:
        subscription.basic_auth_password_encrypted = secret_encrypt(str(basic_auth_password))
    subscription_secrets_seal(subscription=subscription)
    after = _audited_fields(subscription)
    hidden_after = {} if created else _audited_secret_values(subscription)
    changed = [
        name
        for name in after
        if (
            after[name] not in ("", [], None)
            if created
            else before.get(name) != after[name]
            or hidden_before.get(name) != hidden_after.get(name)
        )
    ]
    changes: dict[str, Any] = {
        name: "changed" if name in _SECRET_FIELDS else [before.get(name), after[name]]
        for name in changed
    }
    if password_given:
        changes["basic_auth_password"] = "changed"  # noqa: S105 - never the value
    if not created and not changes:
        # Nothing to write: the row keeps its time of change and its encrypted values (sealed
        # again they would read the same, but differ, and so would the settings' version a
        # page opened meanwhile carries).
        subscription.refresh_from_db()
        return subscription
    try:
        with transaction.atomic():
            subscription.save()
    except IntegrityError:
        # Another request took the name between the check above and this write: the same
        # answer as the check's.
        subscription.validate_constraints()
        raise
    if created:
        _signing_secret_add(subscription, secret=signing_secret)
    if afresh:
        _fresh_start_announce(subscription.pk)
    if created or changes:
        audit_record(
            actor=actor,
            action=AuditAction.WEBHOOK_CREATED if created else AuditAction.WEBHOOK_CHANGED,
            school_id=subscription.school_id,
            object_type="webhook",
            object_id=subscription.pk,
            object_repr=subscription.name,
            changes=changes,
        )
    return subscription


# Recorded in the audit trail as "changed", never with their values.
_SECRET_FIELDS = frozenset({"custom_headers"})


def _audited_fields(subscription: Subscription) -> dict[str, Any]:
    """The editable settings as the audit trail compares them (header names only)."""
    values = {name: getattr(subscription, name) for name in EDITABLE_FIELDS}
    values["custom_headers"] = sorted(values.get("custom_headers") or {})
    values["url"] = _url_query_mask(str(values.get("url") or ""))
    return values


def _audited_secret_values(subscription: Subscription) -> dict[str, Any]:
    """What the audit trail compares but never records: the custom headers' values and the URL
    with its query values, which the recorded fields show masked (a new token is a change all
    the same). ``None`` for what the configured keys cannot read, so a value entered again
    counts as changed."""
    values: dict[str, Any] = {}
    try:
        values["custom_headers"] = subscription_custom_headers(subscription=subscription)
    except SecretUnreadable:
        values["custom_headers"] = None
    values["url"] = _url_stored(subscription)
    return values


def _url_query_mask(url: str) -> str:
    """The URL with its query values masked: receivers put tokens there (``?token=…``)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    masked = urlencode([(name, "…") for name, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, masked, ""))


def subscription_secrets_seal(*, subscription: Subscription) -> None:
    """Put the secret settings of ``subscription`` (validated, saved or not) in the form they
    are stored in: the values of its secret custom headers and its URL as given encrypted, the
    mask in their place. Writes nothing; idempotent.

    ``subscription_save`` stores them so; Send Test on settings not yet saved sends them so,
    that its request reads the values typed (not the stored ones) and its attempt log redacts
    them as it redacts a saved webhook's.
    """
    _custom_headers_store(subscription)
    _url_store(subscription)


def _url_store(subscription: Subscription) -> None:
    """A URL with query values goes encrypted into ``url_encrypted``, masked into ``url``."""
    url, _ = _url_resolve(subscription)
    if url_query_secret(url):
        subscription.url_encrypted = secret_encrypt(url)
        subscription.url = url_query_mask(url, SECRET_MASK)
    else:
        subscription.url_encrypted = ""
        subscription.url = url


def _custom_headers_store(subscription: Subscription) -> None:
    """Split the (validated) custom headers: secret values into the encrypted column, the mask
    in their place."""
    headers, _ = _custom_headers_resolve(subscription)
    by_lower = {name.lower(): name for name in headers}
    # A value kept with the mask is a stored secret: it stays one (never returned, never stored
    # in clear), marked or not; giving the value anew is what unmarks it.
    given = subscription.custom_headers if isinstance(subscription.custom_headers, dict) else {}
    kept = [
        name
        for name, value in given.items()
        if value == SECRET_MASK and name in headers and not header_name_looks_secret(name)
    ]
    marked = list(
        dict.fromkeys(
            [
                by_lower[str(name).lower()]
                for name in subscription.secret_headers
                if str(name).lower() in by_lower
            ]
            + kept
        )
    )
    secret = {name: value for name, value in headers.items() if header_is_secret(name, marked)}
    subscription.secret_headers = marked
    subscription.custom_headers = {
        name: SECRET_MASK if name in secret else value for name, value in headers.items()
    }
    subscription.custom_headers_encrypted = headers_encrypt(secret)


def _state_keep(subscription: Subscription, current: Subscription) -> bool:
    """The webhook's state as the locked row has it, never as the caller read it (a form's page
    may be seconds old by then). Returns whether the change starts the webhook afresh (turned
    back on, or a new URL): its failure streak is then forgotten, since failures against the
    old URL or before it was fixed say nothing of what comes now."""
    for name in STATE_FIELDS:
        setattr(subscription, name, getattr(current, name))
    afresh = _url_resolve(subscription)[0] != _url_stored(current)
    if subscription.is_active and not current.is_active:
        # Turned back on: forget why it was off.
        subscription.disabled_reason = ""
        subscription.disabled_at = None
        afresh = True
    if afresh:
        subscription.failing_since = None
    return afresh


def _url_stored(subscription: Subscription) -> str | None:
    """The URL deliveries go to now (None if its stored value cannot be read)."""
    try:
        return subscription_url(subscription=subscription)
    except SecretUnreadable:
        return None


def subscription_create(
    *,
    school: School,
    basic_auth_password: str | None = None,
    actor: Actor | None = None,
    **fields: Any,
) -> Subscription:
    """Validate and create a subscription with a new signing secret; see ``subscription_save``.

    ``fields`` are among ``EDITABLE_FIELDS`` (``name``, ``url`` and ``topics`` are required;
    the others default as the model says). Raises ``ValueError`` for any other name.
    """
    _fields_check(fields)
    subscription = Subscription(school=school, **_fields_normalize(fields))
    return subscription_save(
        subscription=subscription, basic_auth_password=basic_auth_password, actor=actor
    )


def _fields_check(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"A webhook has no editable setting {sorted(unknown)}")


def _fields_normalize(fields: dict[str, Any]) -> dict[str, Any]:
    """Fresh containers for the JSON settings, so the caller's objects are never shared."""
    normalized = dict(fields)
    if "topics" in normalized:
        normalized["topics"] = list(normalized["topics"] or [])
    if "custom_headers" in normalized:
        normalized["custom_headers"] = dict(normalized["custom_headers"] or {})
    if "secret_headers" in normalized:
        normalized["secret_headers"] = list(normalized["secret_headers"] or [])
    return normalized


def subscription_update(
    *,
    subscription: Subscription,
    basic_auth_password: str | None = None,
    actor: Actor | None = None,
    **fields: Any,
) -> Subscription:
    """Change the given fields and save after validating the result (see ``subscription_save``).

    ``fields`` are among ``EDITABLE_FIELDS``; ``ValueError`` for any other name. Turning
    ``is_active`` back on clears the disabled reason and the failure streak; a new URL clears
    the failure streak.

    The row is locked and ``subscription`` read afresh before the fields are applied, so what
    changed since the caller read it (another update's fields, a pause, a disable) is kept,
    not written back as it was. Raises ``Subscription.DoesNotExist`` when the webhook was
    deleted meanwhile (nothing is written).

    The result is checked before the row is locked: the URL's host name may take seconds to
    resolve, and the engine writes this row meanwhile (a failure streak, a disable), which
    must not wait for it. Checked again under the lock only if its settings changed meanwhile.
    """
    _fields_check(fields)
    draft = Subscription.objects.get(pk=subscription.pk)
    read = _checked_settings(draft)
    _fields_apply(draft, fields)
    subscription_validate(draft, password_given=bool(basic_auth_password))
    with transaction.atomic():
        subscription.refresh_from_db(
            from_queryset=Subscription.objects.select_for_update(of=("self",))
        )
        unchanged = _checked_settings(subscription) == read
        _fields_apply(subscription, fields)
        if unchanged:
            # The settings just checked, as the checks cleaned them.
            for name in _CHECKED_FIELDS:
                setattr(subscription, name, getattr(draft, name))
        return subscription_save(
            subscription=subscription,
            basic_auth_password=basic_auth_password,
            actor=actor,
            checked=unchanged,
        )


def _fields_apply(subscription: Subscription, fields: dict[str, Any]) -> None:
    for name, value in _fields_normalize(fields).items():
        setattr(subscription, name, value)
    if "custom_headers" in fields and "secret_headers" not in fields:
        # A header left out takes its mark with it; marks are only checked when given.
        names = {str(name).lower() for name in subscription.custom_headers or {}}
        subscription.secret_headers = [
            mark for mark in subscription.secret_headers if str(mark).lower() in names
        ]


# What ``subscription_validate`` reads of a webhook, besides the other webhooks' names.
_CHECKED_FIELDS = (
    "school_id",
    *EDITABLE_FIELDS,
    "url_encrypted",
    "basic_auth_password_encrypted",
    "custom_headers_encrypted",
)


def _checked_settings(subscription: Subscription) -> list[Any]:
    return [getattr(subscription, name) for name in _CHECKED_FIELDS]


def subscription_settings_version(subscription: Subscription) -> str:
    """A fingerprint of the webhook's settings as ``subscription`` holds them (read from its
    row): every editable one, ``is_active`` included, and the encrypted values. What the
    engine and the pause services write (its state, its secrets) is not part of it.

    A form's page carries the one of the settings it shows, so that saving it cannot write
    back what was changed since (``subscription_save``'s ``version``).
    """
    text = json.dumps(_checked_settings(subscription), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def settings_changed_message() -> str:
    return _(
        "This webhook was changed since this page was opened (by someone else, or disabled by "
        "the system): saving would undo that. Open the page again to see its settings now, or "
        "save again to replace them with these."
    )


def _signing_secret_add(subscription: Subscription, secret: str | None = None) -> str:
    secret = secret or signing_secret_generate()
    subscription.signing_secrets.create(secret_encrypted=secret_encrypt(secret))
    return secret


@transaction.atomic
def subscription_secret_rotate(
    *, subscription: Subscription, grace_seconds: float | None = None, actor: Actor | None = None
) -> str:
    """Start signing with a new secret and return it; the current ones expire after a grace period.

    During the grace period (``WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS``, 24 h by default) every
    delivery carries a signature with each secret, so receivers can switch at their pace. A
    secret the configured keys cannot read signs nothing (its deliveries fail with that reason):
    it stops at once, so rotating is the way out of a lost encryption key. Until when the
    previous secrets keep signing is then ``signing_secrets_previous_expire_at``.
    Raises ``Subscription.DoesNotExist`` when the webhook was deleted since the caller read it.
    """
    # Locked while its secrets change: a webhook deleted since the caller read it is found gone
    # here, not by the new secret's foreign key at commit.
    Subscription.objects.select_for_update().get(pk=subscription.pk)
    grace = (
        settings.WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS if grace_seconds is None else grace_seconds
    )
    now = timezone.now()
    expires_at = now + dt.timedelta(seconds=grace)
    for signing_secret in signing_secrets_active(subscription=subscription):
        ends = expires_at if _secret_readable(signing_secret.secret_encrypted) else now
        if signing_secret.expires_at is None or signing_secret.expires_at > ends:
            signing_secret.expires_at = ends
            signing_secret.save(update_fields=["expires_at"])
    # Workers keep a copy of each webhook until its updated_at moves: sign with the new secret.
    Subscription.objects.filter(pk=subscription.pk).update(updated_at=timezone.now())
    # What was stored: an unreadable secret stopped now, an earlier rotation's end stays.
    previous_expire_at = signing_secrets_previous_expire_at(subscription=subscription)
    audit_record(
        actor=actor,
        action=AuditAction.SECRET_ROTATED,
        school_id=subscription.school_id,
        object_type="webhook",
        object_id=subscription.pk,
        object_repr=subscription.name,
        changes={
            "previous_secrets_expire_at": previous_expire_at and previous_expire_at.isoformat()
        },
    )
    return _signing_secret_add(subscription)


def _secret_readable(ciphertext: str) -> bool:
    try:
        secret_decrypt(ciphertext)
    except SecretUnreadable:
        return False
    return True


def subscription_secret_reveal(*, subscription: Subscription, actor: Actor | None) -> str:
    """The current signing secret in clear, for showing it to a school admin; the reveal is in
    the audit trail (the secret is not). Raises ``SecretUnreadable`` as ``signing_secret_current``.
    """
    secret = signing_secret_current(subscription=subscription)
    audit_record(
        actor=actor,
        action=AuditAction.SECRET_REVEALED,
        school_id=subscription.school_id,
        object_type="webhook",
        object_id=subscription.pk,
        object_repr=subscription.name,
    )
    return secret


def subscription_disable(
    *,
    subscription: Subscription,
    reason: str,
    actor: Actor | None = None,
    failing_since: dt.datetime | None = None,
    settings_at: dt.datetime | None = None,
) -> bool:
    """Turn a subscription off with the reason shown to its school; False if it already was off.

    Its pending deliveries fail at their next attempt with that reason. Its school's admins are
    e-mailed (in the school's language) and the audit trail records it, once. ``failing_since``
    (the automatic disable): only if its failure streak is still the one that began then and
    it is not paused (a success or a pause may have come since it was read). ``settings_at``
    (a receiver's answer): only if the webhook is as it was then (its ``updated_at``): an
    answer to an attempt made before its URL changed is the old receiver's.
    """
    now = timezone.now()
    row = Subscription.objects.filter(pk=subscription.pk, is_active=True)
    if failing_since is not None:
        row = row.filter(failing_since=failing_since, paused_at__isnull=True)
    if settings_at is not None:
        row = row.filter(updated_at=settings_at)
    updated = row.update(is_active=False, disabled_reason=reason, disabled_at=now, updated_at=now)
    subscription.refresh_from_db(fields=["is_active", "disabled_reason", "disabled_at"])
    if updated:
        logger.warning(
            "Webhook %s of %s disabled: %s", subscription.pk, subscription.school_id, reason
        )
        audit_record(
            actor=actor,
            action=AuditAction.WEBHOOK_DISABLED,
            school_id=subscription.school_id,
            object_type="webhook",
            object_id=subscription.pk,
            object_repr=subscription.name,
            changes={"is_active": [True, False], "reason": reason},
        )
        transaction.on_commit(lambda: _disabled_notify_enqueue(subscription, reason), robust=True)
    return bool(updated)


DISABLED_NOTIFY_TASK = "subscriptions.disabled_notify"


def _disabled_notify_enqueue(subscription: Subscription, reason: str) -> None:
    """The e-mail goes from a task of its own: a webhook is disabled by a worker's recorder
    (a 410) or by the sweeper, which a slow mail server would hold for up to
    ``EMAIL_TIMEOUT`` while every other school's results wait behind it."""
    current_app.send_task(
        DISABLED_NOTIFY_TASK,
        args=[str(subscription.pk), reason],
        retry_policy=settings.WEBHOOKS_PUBLISH_RETRY_POLICY,
    )


def subscription_enable(*, subscription: Subscription, actor: Actor | None = None) -> bool:
    """Turn a subscription back on, forgetting why it was off and its failure streak; False if it
    was on already. Recorded in the audit trail."""
    updated = Subscription.objects.filter(pk=subscription.pk, is_active=False).update(
        is_active=True,
        disabled_reason="",
        disabled_at=None,
        failing_since=None,
        updated_at=timezone.now(),
    )
    subscription.refresh_from_db(
        fields=["is_active", "disabled_reason", "disabled_at", "failing_since"]
    )
    if updated:
        _fresh_start_announce(subscription.pk)
        audit_record(
            actor=actor,
            action=AuditAction.WEBHOOK_ENABLED,
            school_id=subscription.school_id,
            object_type="webhook",
            object_id=subscription.pk,
            object_repr=subscription.name,
            changes={"is_active": [False, True]},
        )
    return bool(updated)


def subscriptions_auto_disable() -> list[Subscription]:
    """Disable every active subscription whose attempts have all failed for the configured period
    (``WEBHOOKS_AUTO_DISABLE_AFTER_SECONDS``, 5 days by default) and e-mail its school's admins.

    Idempotent: a subscription is disabled and announced once.
    """
    period = dt.timedelta(seconds=settings.WEBHOOKS_AUTO_DISABLE_AFTER_SECONDS)
    cutoff = timezone.now() - period
    disabled = []
    # A paused webhook is not disabled for failures: nothing is being sent to it.
    candidates = Subscription.objects.filter(
        is_active=True, paused_at__isnull=True, failing_since__lt=cutoff
    ).select_related("school")
    for subscription in candidates:
        since = subscription.failing_since
        if since is None:
            continue
        reason = (
            f"Disabled automatically: every delivery attempt failed since "
            f"{since.astimezone(subscription.school.tzinfo):%Y-%m-%d %H:%M %Z} "
            f"({period.days} days). Fix the endpoint, re-enable the webhook, then recover the "
            "failed deliveries."
        )
        if subscription_disable(subscription=subscription, reason=reason, failing_since=since):
            disabled.append(subscription)
    return disabled


def subscription_disabled_notify(*, subscription_id: uuid.UUID | str, reason: str) -> None:
    """E-mail the school's admins that the webhook was disabled, in the school's language. A
    mail server that fails or times out is logged: the webhook is disabled either way and the
    admin shows it."""
    subscription = Subscription.objects.filter(pk=subscription_id).select_related("school").first()
    if subscription is None:
        logger.info(
            "Webhook %s was deleted before its admins were told it was disabled", subscription_id
        )
        return
    school = subscription.school
    recipients = school_admin_emails(school=school)
    if not recipients:
        logger.warning("No admin to tell that webhook %s was disabled", subscription.pk)
        return
    try:
        with translation.override(school.language):
            subject = _("Webhook disabled: %(webhook)s (%(school)s)") % {
                "webhook": subscription.name,
                "school": school.name,
            }
            message = _(
                "The webhook “%(webhook)s” of %(school)s sends to %(url)s.\n\n%(reason)s\n\n"
                "Fix the endpoint, re-enable the webhook, then recover its failed deliveries."
            ) % {
                "webhook": subscription.name,
                "school": school.name,
                "url": subscription.url,
                "reason": reason,
            }
        send_mail(subject=subject, message=message, from_email=None, recipient_list=recipients)
    except Exception:
        # The webhook is disabled either way; the admin notice still shows it.
        logger.exception(
            "Could not e-mail %s about disabled webhook %s", recipients, subscription.pk
        )


def subscription_body_preview(
    *,
    body_template: str,
    content_type: str,
    event_type: str,
    school: School,
    profile: str = STANDARD,
) -> str:
    """The body a receiver of this school would get for the event type's sample payload, byte
    for byte as a delivery sends it.

    An empty template previews the standard envelope, or the vendor's body under a vendor
    profile. Raises ``ValidationError`` naming the problem (``event_type`` unknown or not one
    of the profile's vendor's, ``content_type`` or ``profile`` unknown or not together, or
    ``body_template`` that cannot be rendered or parsed, or is given with a vendor profile).
    """
    found = EventType.objects.filter(key=event_type).first()
    if found is None:
        raise ValidationError({"event_type": [_("Unknown event type %r.") % event_type]})
    if content_type not in CONTENT_TYPES:
        raise ValidationError({"content_type": [_("Unknown content type %r.") % content_type]})
    errors = subscription_profile_errors(
        profile=profile, topics=None, content_type=content_type, body_template=body_template
    )
    if profile in PROFILES:
        errors.pop("profile", None)  # a signing key the platform lacks does not change the body
    if errors:
        raise ValidationError(errors)
    envelope = body_sample_envelope(found, school)
    try:
        body, _content_type = render_with_template(
            envelope,
            content_type=content_type,
            template=body_template,
            unix_timestamp=SAMPLE_UNIX_TIMESTAMP,
            profile=profile,
        )
    except BodyTemplateError as exc:
        field = "body_template" if profile == STANDARD else "event_type"
        raise ValidationError({field: [exc.message()]}) from exc
    return body.decode()


@transaction.atomic
def secrets_reencrypt() -> int:
    """Re-encrypt every stored secret with the first of ``WEBHOOKS_ENCRYPTION_KEYS``; return how
    many. Run after putting a new key first; then the old key can be removed.

    Signing secrets whose grace period is over are deleted instead: they never sign again, and
    left under the old key they could not be read once it is dropped (nor block this, when the
    key they were under is already lost).

    Raises ``SecretUnreadable`` (and changes nothing) if a secret cannot be read with any key;
    its message names every such secret and its webhook, to enter again or rotate.
    """
    count = 0
    unreadable: list[str] = []

    def reencrypt(ciphertext: str, what: str, subscription_id: object) -> str:
        nonlocal count
        try:
            result = secret_reencrypt(ciphertext)
        except SecretUnreadable:
            unreadable.append(f"the {what} of webhook {subscription_id}")
            return ciphertext
        count += 1
        return result

    SigningSecret.objects.exclude(signing_secrets_active_q()).delete()
    for signing_secret in SigningSecret.objects.select_for_update().order_by("subscription_id"):
        signing_secret.secret_encrypted = reencrypt(
            signing_secret.secret_encrypted, "signing secret", signing_secret.subscription_id
        )
        signing_secret.save(update_fields=["secret_encrypted"])
    encrypted = Q()
    for column, _what in _ENCRYPTED_COLUMNS:
        encrypted |= ~Q(**{column: ""})
    for subscription in Subscription.objects.select_for_update().filter(encrypted).order_by("pk"):
        columns = [column for column, _what in _ENCRYPTED_COLUMNS if getattr(subscription, column)]
        for column, what in _ENCRYPTED_COLUMNS:
            if column in columns:
                value = reencrypt(getattr(subscription, column), what, subscription.pk)
                setattr(subscription, column, value)
        subscription.save(update_fields=columns)
    if unreadable:
        raise SecretUnreadable(
            "No configured key can read "
            + "; ".join(unreadable)
            + ". Enter those settings again (rotate a signing secret) and run this again."
        )
    return count


# The encrypted columns of a webhook, and what each holds (for operators' messages).
_ENCRYPTED_COLUMNS = (
    ("basic_auth_password_encrypted", "basic-auth password"),
    ("url_encrypted", "URL"),
    ("custom_headers_encrypted", "secret header values"),
)


# What the database deletes with a webhook by itself (ON DELETE CASCADE, migration
# deliveries 0008): its deliveries, their attempts, its endpoint state. Every other relation to
# Subscription is deleted here first (a test keeps this list and the models in step).
DATABASE_CASCADES = {("deliveries", "Delivery"), ("deliveries", "EndpointState")}


@transaction.atomic
def subscription_delete(*, subscription: Subscription, actor: Actor | None = None) -> None:
    """Delete a subscription with its secrets and its delivery log (recorded in the audit
    trail, which keeps its name and id), all or nothing.

    On PostgreSQL the delivery log goes by the database's cascade, in one statement that loads
    no row: Django's delete read every delivery (its body included) and then named them all in
    one statement, which PostgreSQL refuses past 65,535 (a webhook with more could not be
    deleted at all). About 8 s for 410,000 deliveries with their attempts.
    """
    audit_record(
        actor=actor,
        action=AuditAction.WEBHOOK_DELETED,
        school_id=subscription.school_id,
        object_type="webhook",
        object_id=subscription.pk,
        object_repr=subscription.name,
    )
    if connection.vendor != "postgresql":
        subscription.delete()  # SQLite: no cascades in the database; Django batches its own
        return
    SigningSecret.objects.filter(subscription=subscription).delete()
    Subscription.objects.filter(pk=subscription.pk)._raw_delete(connection.alias)
