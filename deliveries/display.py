"""What the admin shows of an attempt to someone who may not see the webhook's secrets.

Support staff inspect deliveries but must not learn a school's secrets. Besides the custom
headers' values (hidden where they were sent), a receiver can echo a request back (httpbin,
request bins, debug pages), so the secret values are also replaced wherever they show up in its
answer, and the values in a URL's query string (``?token=...``) are masked. Pure functions.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from django.utils.formats import number_format
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import ngettext

from common.admin_display import datetime_in_zone
from webhook_engine.redaction import CREDENTIAL_HEADERS
from webhook_engine.vendors import PRODUCT_HEADER_PREFIXES

from .models import CircuitState, DeliveryState, EndpointState, delivery_state
from .services.send import headers_custom_hide

HIDDEN = "[hidden]"


def url_query_mask(url: str) -> str:
    """The URL with every query value replaced by … (the names stay, to recognise it)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    masked = "&".join(f"{quote(name, safe='[]')}=…" for name in names)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, masked, ""))


def text_scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of each secret replaced, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def attempt_shown(attempt: Any, *, secrets: list[str] | None) -> dict[str, Any]:
    """The request and answer of an attempt as a viewer may see them: all of it when ``secrets``
    is None (they may see the secrets), else with the secrets hidden and scrubbed."""
    if secrets is None:
        return {
            "request_url": attempt.request_url,
            "request_headers": attempt.request_headers,
            "response_headers": attempt.response_headers,
            "response_body": attempt.response_body,
            "error_message": attempt.error_message,
        }
    return {
        "request_url": url_query_mask(text_scrub(attempt.request_url, secrets)),
        "request_headers": {
            name: HIDDEN if name.lower() in CREDENTIAL_HEADERS else text_scrub(str(value), secrets)
            for name, value in _request_headers_hide(attempt.request_headers).items()
        },
        "response_headers": {
            name: text_scrub(str(value), secrets)
            for name, value in attempt.response_headers.items()
        },
        "response_body": text_scrub(attempt.response_body, secrets),
        "error_message": text_scrub(attempt.error_message, secrets),
    }


def _request_headers_hide(headers: dict[str, str]) -> dict[str, str]:
    """The custom headers' values hidden; the vendor profiles' headers (``x-edusign-...``,
    ``X-Edudip-...``) are the product's own, which no custom header may be named like, so
    they stay readable."""
    hidden = headers_custom_hide(headers)
    return {
        name: headers[name] if name.lower().startswith(PRODUCT_HEADER_PREFIXES) else value
        for name, value in hidden.items()
    }


STATUS_COLOURS: dict[str, str] = {
    DeliveryState.DELIVERED: "#2e7d32",
    DeliveryState.FAILED: "#c62828",
    DeliveryState.RETRYING: "#9a6700",
    DeliveryState.PENDING: "#5f6b7a",
}


def state_badge(state: DeliveryState | str | None) -> str:
    """A delivery's state (``models.delivery_state``) as a small coloured label, with the same
    word on every page."""
    if not state:
        return "—"
    state = DeliveryState(state)
    return format_html(
        '<span class="webhook-status webhook-status-{}" style="color: {}; font-weight: bold;">'
        "{}</span>",
        state.value,
        STATUS_COLOURS[state],
        state.label,
    )


def status_badge(status: str | None, last_error_kind: str = "") -> str:
    """``state_badge`` from a delivery's status and last error."""
    if not status:
        return "—"
    return state_badge(delivery_state(status, last_error_kind))


def circuit_text(state: EndpointState | None, zone: str) -> str:
    """What a webhook's circuit breaker is doing, in words ("" when its circuit is closed): HTML,
    its times as ``<time>`` elements."""
    if state is None or state.circuit_state == CircuitState.CLOSED:
        return ""
    since = datetime_in_zone(state.circuit_changed_at, zone) if state.circuit_changed_at else "—"
    failures = state.consecutive_failures
    values = {"since": since, "failures": number_format(failures, force_grouping=True)}
    if state.circuit_state == CircuitState.HALF_OPEN:
        sentence = ngettext(
            "Its deliveries wait (circuit open since %(since)s, %(failures)s network failure in a "
            "row); one is being sent as a probe.",
            "Its deliveries wait (circuit open since %(since)s, %(failures)s network failures in a "
            "row); one is being sent as a probe.",
            failures,
        )
    else:
        values["probe"] = datetime_in_zone(state.probe_at, zone) if state.probe_at else "—"
        sentence = ngettext(
            "Its deliveries wait (circuit open since %(since)s, %(failures)s network failure in a "
            "row); one is sent as a probe at %(probe)s, and the first answer resumes them.",
            "Its deliveries wait (circuit open since %(since)s, %(failures)s network failures in a "
            "row); one is sent as a probe at %(probe)s, and the first answer resumes them.",
            failures,
        )
    # The times are HTML already: interpolated into the escaped sentence, not escaped again
    # (format_html would show their markup as text).
    return mark_safe(  # noqa: S308
        conditional_escape(sentence)
        % {name: conditional_escape(value) for name, value in values.items()}
    )
