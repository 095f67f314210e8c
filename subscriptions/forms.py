"""The webhook settings form of the admin, in BrainCert's order: name, URL, topics, content type,
basic authentication, custom headers, webhook body, signature.

It refuses exactly what ``subscription_save`` refuses, with the same messages as the API: the
checks run through ``subscription_validate``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from common.filters import BoundedDateTimeField
from common.forms import NestingSafeJSONField
from events.models import EventType
from webhook_engine.bodies import PRESETS

from .models import EDITABLE_FIELDS, SECRET_MASK, Profile, Subscription
from .services import (
    custom_headers_errors,
    settings_changed_message,
    subscription_settings_version,
    subscription_topics_errors,
    subscription_validate,
)

_PATTERN_SEPARATORS = re.compile(r"[\s,]+")
# Only these end a line: str.splitlines() also splits on U+2028 and other characters a header
# value may not hold, which must be refused with the reason, not read as a new line.
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


# The presets as the page names them: the vendor's name and the shape of its body stay as they
# are, the words around them are the reader's.
PRESET_LABELS: dict[str, Any] = {
    "braincert": gettext_lazy(
        "BrainCert-like envelope: {id, resource, action, created_at, timestamp, payload}"
    ),
    "edusign": gettext_lazy("Edusign-like envelope: flat {type, appId, ...fields}"),
    "edume": gettext_lazy("eduMe-like envelope: {type, payload, timestamp}"),
}


def topic_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """The catalog's event types grouped by resource: [(group, [(key, description), ...])]."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key, group, description in EventType.objects.filter(deprecated=False).values_list(
        "key", "group", "description"
    ):
        groups.setdefault(group, []).append((key, description))
    return sorted((group, sorted(types)) for group, types in groups.items())


class TopicsWidget(forms.Widget):
    """The catalog as checkboxes grouped by resource, plus free patterns (``course.*``).

    Posts ``<name>`` once per ticked type and ``<name>_patterns`` as space-separated text; the
    value is one list with both.
    """

    template_name = "subscriptions/widgets/topics.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.groups: list[tuple[str, list[tuple[str, str]]]] = []

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        selected = value if isinstance(value, list) else []
        known = {key for _group, types in self.groups for key, _ in types}
        context["widget"].update(
            {
                "groups": [
                    {
                        "name": group,
                        "slug": re.sub(r"[^a-z0-9]+", "-", group.lower()),
                        "checked": sum(1 for key, _ in types if key in selected),
                        "types": [
                            {"key": key, "description": description, "checked": key in selected}
                            for key, description in types
                        ],
                    }
                    for group, types in self.groups
                ],
                "patterns": " ".join(str(topic) for topic in selected if str(topic) not in known),
                "reference_url": reverse("admin:events_eventtype_reference"),
            }
        )
        return context

    def format_value(self, value: Any) -> Any:
        return value

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        keys = data.getlist(name) if hasattr(data, "getlist") else list(data.get(name) or [])
        patterns = _PATTERN_SEPARATORS.split(str(data.get(f"{name}_patterns") or "").strip())
        topics: list[str] = []
        for topic in [*keys, *patterns]:
            if topic and topic not in topics:
                topics.append(topic)
        return topics

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False


class TopicsField(forms.Field):
    widget = TopicsWidget

    def to_python(self, value: Any) -> list[str]:
        return [str(topic) for topic in value] if isinstance(value, list) else []

    def validate(self, value: list[str]) -> None:
        errors = subscription_topics_errors(value)
        if errors:
            raise ValidationError(errors)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return list(initial or []) != list(data or [])


class HeadersField(forms.CharField):
    """Custom headers as one ``Name: value`` per line."""

    widget = forms.Textarea(
        attrs={"rows": 3, "class": "vLargeTextField", "placeholder": "X-Api-Token: ..."}
    )

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return "\n".join(f"{name}: {header}" for name, header in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        if isinstance(value, dict):
            return value
        headers: dict[str, str] = {}
        errors: list[str] = []
        for number, line in enumerate(_LINE_BREAKS.split(str(value or "")), start=1):
            if not line.strip():
                continue
            name, colon, header = line.partition(":")
            if not colon or not name.strip():
                errors.append(
                    _("Line %(number)s: write each header as Name: value.") % {"number": number}
                )
            elif name.strip() in headers:
                errors.append(_("%(name)s is given twice.") % {"name": name.strip()})
            else:
                headers[name.strip()] = header.strip()
        if errors:
            # The lines that could be read are checked too, so one submit shows every problem.
            # A masked value stands for the stored one, which was checked when it was saved.
            readable = {
                name: "" if header == SECRET_MASK else header for name, header in headers.items()
            }
            raise ValidationError(errors + custom_headers_errors(readable))
        return headers

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return (initial or {}) != self.to_python(data)
        except ValidationError:
            return True


class HeaderNamesField(forms.CharField):
    """Header names separated by commas, spaces or lines."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(name) for name in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        return [name for name in _PATTERN_SEPARATORS.split(str(value or "").strip()) if name]

    def has_changed(self, initial: Any, data: Any) -> bool:
        return list(initial or []) != self.to_python(data)


YES_NO = [("True", gettext_lazy("Yes")), ("False", gettext_lazy("No"))]


class BodyTemplateWidget(forms.Textarea):
    """The body template with a preset picker and a live preview (the preview asks the admin's
    preview view, which renders it with ``subscription_body_preview``)."""

    template_name = "subscriptions/widgets/body_template.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            {
                "rows": 8,
                "class": "vLargeTextField webhook-body",
                "spellcheck": "false",
                **(attrs or {}),
            }
        )
        self.preview_url = ""
        self.school_id: int | None = None
        self.event_types: list[str] = []

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"].update(
            {
                "presets": [
                    {"key": key, "label": PRESET_LABELS.get(key, preset["label"])}
                    for key, preset in PRESETS.items()
                ],
                "presets_data": {
                    key: {"json": p["json"], "xml": p["xml"]} for key, p in PRESETS.items()
                },
                "presets_id": f"{(attrs or {}).get('id', name)}_presets_data",
                "preview_url": self.preview_url,
                "school_id": self.school_id or "",
                "event_types": self.event_types,
            }
        )
        return context


class PayloadFilterField(NestingSafeJSONField):
    """A payload filter as JSON to read: a condition per line with its keys as written (field,
    op, value; the database keeps an object's keys in its own order), groups indented."""

    def prepare_value(self, value: Any) -> Any:
        if value is None:  # no filter: an empty box, as the help says (Django writes null)
            return ""
        if isinstance(value, forms.fields.InvalidJSONInput):
            return super().prepare_value(value)
        return _filter_shown(value, 0)


_CONDITION_KEYS = ("field", "op", "value")


def _filter_shown(node: Any, depth: int) -> str:
    group = (
        next((key for key in ("all", "any") if key in node), None)
        if isinstance(node, dict)
        else None
    )
    if group is None or len(node) != 1 or not isinstance(node[group], list):
        if isinstance(node, dict):
            node = dict(sorted(node.items(), key=lambda item: _key_rank(item[0])))
        return json.dumps(node, ensure_ascii=False)
    inner = "  " * (depth + 1)
    members = f",\n{inner}".join(_filter_shown(member, depth + 1) for member in node[group])
    return f'{{"{group}": [\n{inner}{members}\n{"  " * depth}]}}'


def _key_rank(key: str) -> tuple[int, str]:
    return (_CONDITION_KEYS.index(key) if key in _CONDITION_KEYS else len(_CONDITION_KEYS), key)


class SubscriptionForm(forms.ModelForm):
    url = forms.URLField(
        label=gettext_lazy("URL"),
        max_length=2000,
        assume_scheme="https",  # typed without a scheme means https
        widget=forms.URLInput(attrs={"class": "vURLField", "placeholder": "https://"}),
        help_text=format_lazy(
            "{} {}",
            gettext_lazy("Where each event is POSTed. Public addresses only."),
            format_lazy(
                gettext_lazy(
                    "Values in the query string (tokens) are stored encrypted and show as {}; "
                    "leave them so to keep them."
                ),
                SECRET_MASK,
            ),
        ),
    )
    topics = TopicsField(label=gettext_lazy("Topics"))
    payload_filter = PayloadFilterField(
        label=gettext_lazy("Payload filter"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField webhook-payload-filter"}),
        help_text=gettext_lazy(
            "Empty: every event of the topics. Or JSON that the event's data must pass, "
            'such as {"all": [{"field": "group.id", "op": "eq", "value": 12}, '
            '{"field": "course.payment_type", "op": "in", "value": ["free"]}]}. Comparisons: '
            "eq, ne, in, not_in, gt, gte, lt, lte, contains, starts_with, ends_with, exists; "
            "groups all and any, 3 levels, 20 conditions. A field the event lacks fails its "
            "comparison. The README's Payload filters section has the details."
        ),
    )
    basic_auth_enabled = forms.TypedChoiceField(
        label=gettext_lazy("Basic authentication"),
        choices=YES_NO,
        coerce=lambda value: value in (True, "True"),
        required=False,
        empty_value=False,  # type: ignore[arg-type]
        widget=forms.RadioSelect(attrs={"class": "inline radiolist"}),
        initial="False",
        help_text=gettext_lazy("Sends Authorization: Basic with the username and password below."),
    )
    basic_auth_password = forms.CharField(
        label=gettext_lazy("Password"),
        required=False,
        max_length=500,  # as the API's
        # What was typed comes back when the page shows errors, so it need not be typed again;
        # the stored password never reaches the page.
        widget=forms.PasswordInput(render_value=True, attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Stored encrypted, never shown again."),
    )
    custom_headers = HeadersField(
        label=gettext_lazy("Custom headers"),
        required=False,
        help_text=format_lazy(
            "{} {}",
            gettext_lazy("One Name: value per line, sent with every delivery."),
            format_lazy(
                gettext_lazy("A secret value shows as {}; leave it so to keep it."), SECRET_MASK
            ),
        ),
    )
    secret_headers = HeaderNamesField(
        label=gettext_lazy("Secret headers"),
        required=False,
        widget=forms.TextInput(attrs={"class": "vTextField", "placeholder": "X-Receiver-Sig"}),
        help_text=gettext_lazy(
            "Names of the headers above whose values are secret: stored encrypted, never shown "
            "again, left out of the delivery log. Names like X-Api-Key, X-Auth-Token or "
            "X-Signature are secret without being listed."
        ),
    )

    # The settings the page was opened with (``subscription_settings_version``): saving a page
    # older than a change made since would write the change back.
    settings_version = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Subscription
        fields = ["school", *EDITABLE_FIELDS]
        widgets = {
            "content_type": forms.RadioSelect(attrs={"class": "inline radiolist"}),
            "profile": forms.Select(attrs={"class": "webhook-profile"}),
            "body_template": BodyTemplateWidget,
            "basic_auth_username": forms.TextInput(attrs={"autocomplete": "off"}),
        }
        labels = {
            "school": gettext_lazy("School"),
            "name": gettext_lazy("Webhook name"),
            "content_type": "Content-Type",
            "basic_auth_username": gettext_lazy("Username"),
            "body_template": gettext_lazy("Webhook body"),
            "sign_ed25519": gettext_lazy("Asymmetric signature (v1a)"),
            "is_active": gettext_lazy("Active"),
            "profile": gettext_lazy("Delivery profile"),
        }
        help_texts = {
            "name": gettext_lazy("A name to recognise it by, such as the system it feeds."),
            "body_template": gettext_lazy(
                "Empty sends the standard envelope {id, type, school, timestamp, data}. Or pick a "
                "preset, or write your own (Django template language with id, type, resource, "
                "action, timestamp, unix_timestamp, school and data)."
            ),
            "is_active": gettext_lazy("Only active webhooks receive events."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_version = (
            None if self.instance._state.adding else subscription_settings_version(self.instance)
        )
        self.initial["settings_version"] = self.stored_version
        groups = topic_groups()
        if "topics" in self.fields:
            self.fields["topics"].widget.groups = groups
        body = self.fields["body_template"].widget if "body_template" in self.fields else None
        if isinstance(body, BodyTemplateWidget):
            body.preview_url = reverse("admin:subscriptions_subscription_preview")
            body.school_id = self.instance.school_id
            body.event_types = [key for _group, types in groups for key, _ in types]
        if "sign_ed25519" in self.fields:
            self.fields["sign_ed25519"].help_text = format_html(
                _(
                    "Also sign with the platform's Ed25519 key (webhook-signature v1a). Receivers "
                    'verify it with the <a href="{}" download>public key (PEM)</a> or the '
                    '<a href="{}">JWK set</a>.'
                ),
                reverse("webhooks-public-key"),
                reverse("webhooks-jwks"),
            )
        if "profile" in self.fields:
            self.fields["profile"].help_text = self._profile_help()
            # Not posted (a client of the plain form that predates it): the model's default.
            self.fields["profile"].required = False
        if self.instance.basic_auth_password_encrypted:
            self.fields["basic_auth_password"].help_text = _(
                "A password is set; leave empty to keep it. Stored encrypted, never shown."
            )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or self.cleaned_data
        given = cleaned.get("settings_version")
        # Send Test with the page's settings saves nothing: it may try them whatever changed.
        if given and given != self.stored_version and "_send_test" not in self.data:
            self.add_error(None, settings_changed_message())
            # Shown again with what was typed and the settings' version now: saving that page
            # again replaces them knowingly.
            data = self.data.copy()  # type: ignore[attr-defined]
            data[self.add_prefix("settings_version")] = self.stored_version
            self.data = data
        return cleaned

    def clean_profile(self) -> str:
        return self.cleaned_data.get("profile") or Profile.STANDARD

    def _profile_help(self) -> str:
        client_id = (
            format_html(_("this webhook's id, <code>{}</code>"), self.instance.pk)
            if self.instance.pk and not self.instance._state.adding
            else _("this webhook's id (shown once it is saved)")
        )
        return format_html(
            _(
                "Standard Webhooks (the envelope above, or your own body), or exactly as a vendor "
                "sends: its body, field names, dates, event names, headers and signature, so a "
                "receiver written for it works unchanged. A vendor profile sends only the "
                "vendor's event types (<code>course.*</code> means its course events) and its own "
                "body. Edusign: the client ID is {client_id} and the client secret is the signing "
                'secret. edudip: receivers verify with the <a href="{ecdsa_key_url}" download>'
                "ECDSA public key (PEM)</a>. What each profile sends: "
                '<a href="{reference_url}">event reference</a>.'
            ),
            client_id=client_id,
            ecdsa_key_url=reverse("webhooks-ecdsa-public-key"),
            reference_url=reverse("admin:events_eventtype_reference"),
        )

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        # The same checks subscription_save makes (destination, headers, body, ...), shown in the
        # same round as the fields' own errors: one submit shows every problem. A field that
        # already has an error is not checked again (its value did not reach the instance).
        try:
            subscription_validate(
                self.instance,
                password_given=bool(self.cleaned_data.get("basic_auth_password")),
            )
        except ValidationError as exc:
            failed = set(self.errors)
            for field, messages in exc.message_dict.items():
                target = field if field in self.fields else None
                if target in failed or (target is None and field in failed):
                    continue
                self.add_error(target, messages)


class SendTestForm(forms.Form):
    event_type = forms.ChoiceField(label=gettext_lazy("Topic"))

    def __init__(self, *args: Any, event_types: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["event_type"]
        if isinstance(field, forms.ChoiceField):
            field.choices = [(key, key) for key in event_types]


class PauseForm(forms.Form):
    resume_at = BoundedDateTimeField(
        label=gettext_lazy("Resume automatically at"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        help_text=gettext_lazy("Empty: it stays paused until someone resumes it."),
    )


class RecoverForm(forms.Form):
    since = BoundedDateTimeField(
        label=gettext_lazy("Failed since"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )


_DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def _datetime_local() -> forms.DateTimeInput:
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class ReplayForm(forms.Form):
    """What to replay to a webhook: event types (none ticked: every type it receives) and a
    range of publication times, in the time zone active while it is bound (the school's)."""

    event_types = forms.MultipleChoiceField(
        label=gettext_lazy("Event types"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("None ticked: every type the webhook receives."),
    )
    since = BoundedDateTimeField(
        label=gettext_lazy("Published since"),
        required=False,
        widget=_datetime_local(),
        input_formats=_DATETIME_FORMATS,
    )
    until = BoundedDateTimeField(
        label=gettext_lazy("Published before"),
        required=False,
        widget=_datetime_local(),
        input_formats=_DATETIME_FORMATS,
    )

    def __init__(self, *args: Any, event_types: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["event_types"]
        if isinstance(field, forms.MultipleChoiceField):
            field.choices = [(key, key) for key in event_types]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since >= until:
            self.add_error("until", _("“Until” must be after “since”."))
        return cleaned
