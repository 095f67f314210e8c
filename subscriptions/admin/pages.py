"""The pages of one webhook besides its settings page: Send Test, the signing secret (reveal,
rotate), recovering failed deliveries, and the body preview the settings page calls."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from audit.services import actor_user
from common.admin_display import datetime_text
from deliveries.display import attempt_shown, url_query_mask
from deliveries.explanations import failure_explain
from deliveries.selectors import (
    deliveries_failed_count,
    deliveries_held_count,
)
from deliveries.services import (
    ReplayResult,
    deliveries_recover,
    deliveries_replay,
    delivery_test_send,
    events_replay_count,
    replay_plan,
    subscription_pause,
    subscription_resume,
)
from schools.admin_scoping import (
    SchoolScopedAdmin,
    administers,
    school_id_parse,
    schools_visible,
)

from ..crypto import SecretUnreadable
from ..forms import PauseForm, RecoverForm, ReplayForm, SendTestForm
from ..models import NEWEST_SECRET_ONLY_PROFILES, SigningSecret, Subscription
from ..selectors import (
    replay_event_types,
    subscription_event_types,
    subscription_hidden_values,
)
from ..services import (
    subscription_body_preview,
    subscription_enable,
    subscription_secret_reveal,
    subscription_secret_rotate,
)

logger = logging.getLogger(__name__)

MASK = "••••••••"


class WebhookPages(SchoolScopedAdmin):
    """Who may use the pages of a webhook, and the pages themselves."""

    # --- Permissions ----------------------------------------------------------------------

    def has_send_test_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("subscriptions.send_test_subscription") and self._obj_visible(
            request, obj
        )

    def has_manage_secret_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The permission, and being an admin of this webhook's school: seeing a school (as
        # support staff see every school) never opens its secrets.
        allowed = request.user.has_perm("subscriptions.manage_secret_subscription")
        if obj is None:
            return allowed and self._obj_visible(request, obj)
        return allowed and self._obj_visible(request, obj) and administers(request, obj.school_id)

    def has_recover_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("deliveries.retrigger_delivery") and self._obj_visible(
            request, obj
        )

    def has_replay_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_recover_permission(request, obj)

    # --- Pages of one webhook -------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def view(page: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return self.admin_site.admin_view(_gone_is_404(page))

        return [
            path("preview/", view(self.preview_view), name="subscriptions_subscription_preview"),
            path(
                "<path:object_id>/send-test/",
                view(self.send_test_view),
                name="subscriptions_subscription_send_test",
            ),
            path(
                "<path:object_id>/secret/",
                view(self.secret_view),
                name="subscriptions_subscription_secret",
            ),
            path(
                "<path:object_id>/rotate-secret/",
                view(self.rotate_secret_view),
                name="subscriptions_subscription_rotate_secret",
            ),
            path(
                "<path:object_id>/recover/",
                view(self.recover_view),
                name="subscriptions_subscription_recover",
            ),
            path(
                "<path:object_id>/replay/",
                view(self.replay_view),
                name="subscriptions_subscription_replay",
            ),
            path(
                "<path:object_id>/pause/",
                view(self.pause_view),
                name="subscriptions_subscription_pause",
            ),
            path(
                "<path:object_id>/enable/",
                view(self.enable_view),
                name="subscriptions_subscription_enable",
            ),
            *super().get_urls(),
        ]

    def _page_context(self, request: HttpRequest, subscription: Subscription, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": subscription.name,
            "opts": self.opts,
            "original": subscription,
            "has_view_permission": True,
            "change_url": reverse(
                "admin:subscriptions_subscription_change", args=[subscription.pk]
            ),
        }

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send the chosen topic's sample now through the real delivery path; show the answer."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_send_test_permission(request, subscription):
            raise PermissionDenied
        event_types = subscription_event_types(subscription=subscription)
        form = SendTestForm(request.POST or None, event_types=event_types)
        context = self._page_context(request, subscription, _("Send Test"))
        context["target_url"] = (
            subscription.url
            if self.has_manage_secret_permission(request, subscription)
            else url_query_mask(subscription.url)
        )
        if request.method == "POST" and form.is_valid():
            try:
                attempt = delivery_test_send(
                    subscription=subscription, event_type=form.cleaned_data["event_type"]
                )
            except ValidationError as exc:
                context["errors"] = exc.messages
            else:
                delivery = attempt.delivery
                secrets = (
                    None
                    if self.has_manage_secret_permission(request, subscription)
                    else subscription_hidden_values(subscription=subscription)
                )
                shown = attempt_shown(attempt, secrets=secrets)
                context.update(
                    {
                        "attempt": attempt,
                        "shown": shown,
                        "event_type": form.cleaned_data["event_type"],
                        "request_headers": shown["request_headers"],
                        "request_body": bytes(delivery.body).decode("utf-8", errors="replace"),
                        "explanation": failure_explain(
                            error_kind=attempt.error_kind,
                            status=attempt.response_status,
                            timeout_seconds=settings.WEBHOOKS_TIMEOUT_SECONDS,
                            retried=False,
                        ),
                        "delivery_url": reverse(
                            "admin:deliveries_delivery_change", args=[delivery.pk]
                        ),
                    }
                )
        context["form"] = form
        return TemplateResponse(request, "admin/subscriptions/subscription/send_test.html", context)

    def secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The signing secret in clear, on a POST (never in a page by default, never cached)."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_manage_secret_permission(request, subscription):
            raise PermissionDenied
        secret = error = None
        if request.method == "POST":
            try:
                secret = subscription_secret_reveal(
                    subscription=subscription, actor=actor_user(request.user)
                )
            except SecretUnreadable:
                error = _(
                    "The signing secret cannot be decrypted with the platform's encryption keys. "
                    "Rotate it to make a new one, then give that to the receiver."
                )
            except SigningSecret.DoesNotExist:
                error = _("This webhook has no signing secret. Rotate it to make one.")
            else:
                logger.info(
                    "Signing secret of webhook %s shown to user %s",
                    subscription.pk,
                    request.user.pk,
                )
            if "application/json" in request.headers.get("Accept", ""):
                if error:
                    return JsonResponse({"error": error}, status=409)
                return JsonResponse({"secret": secret})
        context = self._page_context(request, subscription, _("Signing secret"))
        context.update({"secret": secret, "error": error})
        return TemplateResponse(request, "admin/subscriptions/subscription/secret.html", context)

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then rotate: a new secret signs at once, the old ones during the grace."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_manage_secret_permission(request, subscription):
            raise PermissionDenied
        if request.method == "POST":
            subscription_secret_rotate(subscription=subscription, actor=actor_user(request.user))
            self.message_user(
                request,
                _(
                    "A new signing secret signs from now on; the previous one keeps signing for "
                    "%(grace)s. Reveal the new one below and give it to the receiver."
                )
                % {"grace": _grace_text()},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
            )
        context = self._page_context(request, subscription, _("Rotate the signing secret"))
        context["grace"] = _grace_text()
        context["newest_only"] = subscription.profile in NEWEST_SECRET_ONLY_PROFILES
        return TemplateResponse(
            request, "admin/subscriptions/subscription/rotate_secret.html", context
        )

    def recover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Re-send every failed delivery of the webhook since a time (after an outage)."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_recover_permission(request, subscription):
            raise PermissionDenied
        default_since = subscription.failing_since or timezone.now() - dt.timedelta(days=1)
        form = RecoverForm(
            request.POST or None,
            initial={"since": timezone.localtime(default_since).replace(second=0, microsecond=0)},
        )
        if request.method == "POST" and form.is_valid():
            since = form.cleaned_data["since"]
            if not subscription.is_active:
                self.message_user(
                    request,
                    _("Nothing was sent: the webhook is disabled. Re-enable it, then recover."),
                    messages.ERROR,
                )
                return HttpResponseRedirect(request.get_full_path())
            count = deliveries_recover(
                subscription=subscription, since=since, actor=actor_user(request.user)
            )
            message = ngettext(
                "%(count)s failed delivery since %(since)s is being sent again.",
                "%(count)s failed deliveries since %(since)s are being sent again.",
                count,
            ) % {
                "count": number_format(count, force_grouping=True),
                "since": datetime_text(since, subscription.school.timezone),
            }
            self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(
                reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
            )
        since = form.cleaned_data["since"] if form.is_bound and form.is_valid() else default_since
        context = self._page_context(request, subscription, _("Recover failed deliveries"))
        context.update(
            {
                "form": form,
                "failed_count": deliveries_failed_count(
                    subscription_id=subscription.pk, since=since
                ),
                "since": since,
            }
        )
        return TemplateResponse(request, "admin/subscriptions/subscription/recover.html", context)

    def replay_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Re-send the webhook's events of some types and/or a time range: the form, then the
        count to confirm, then the replay (``deliveries_replay``). Times in the school's zone."""
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_replay_permission(request, subscription):
            raise PermissionDenied
        with timezone.override(subscription.school.tzinfo):
            return self._replay_page(request, subscription)

    def _replay_page(self, request: HttpRequest, subscription: Subscription) -> HttpResponse:
        form = ReplayForm(
            request.POST or None, event_types=replay_event_types(subscription=subscription)
        )
        context = self._page_context(request, subscription, _("Replay events"))
        context.update(
            {
                "form": form,
                "max_events": number_format(
                    settings.WEBHOOKS_REPLAY_MAX_EVENTS, force_grouping=True
                ),
            }
        )
        if request.method == "POST" and form.is_valid():
            try:
                plan = replay_plan(
                    subscription=subscription,
                    event_types=form.cleaned_data["event_types"],
                    since=form.cleaned_data["since"],
                    until=form.cleaned_data["until"],
                )
                if request.POST.get("confirm") != "yes":
                    context.update({"count": events_replay_count(plan=plan), "plan": plan})
                else:
                    result = deliveries_replay(plan=plan, actor=actor_user(request.user))
                    self.message_user(request, _replay_message(result), messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
                    )
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for field, errors in exc.message_dict.items():
                        form.add_error(field if field in form.fields else None, errors)
                else:
                    form.add_error(None, exc.messages)
        context["school_zone"] = subscription.school.timezone
        return TemplateResponse(request, "admin/subscriptions/subscription/replay.html", context)

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Pause the webhook (until a time, or until resumed), or resume a paused one."""
        subscription = self.get_object(request, unquote(object_id))
        if subscription is None or not self.has_change_permission(request, subscription):
            raise PermissionDenied
        change_url = reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
        form = PauseForm(
            request.POST if "_pause" in request.POST else None,
            initial={
                "resume_at": timezone.localtime(subscription.resume_at)
                if subscription.resume_at
                else None
            },
        )
        actor = actor_user(request.user)
        if request.method == "POST" and "_resume" in request.POST:
            result = subscription_resume(subscription=subscription, actor=actor)
            if result.resumed:
                message = _resumed_text(subscription, result.held)
                self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and form.is_valid():
            until = form.cleaned_data["resume_at"]
            try:
                subscription_pause(subscription=subscription, until=until, actor=actor)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                self.message_user(request, _pause_text(subscription), messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        title = _("Resume the webhook") if subscription.paused_at else _("Pause the webhook")
        context = self._page_context(request, subscription, title)
        context.update(
            {
                "form": form,
                "held_count": deliveries_held_count(subscription_id=subscription.pk)
                if subscription.paused_at
                else 0,
            }
        )
        return TemplateResponse(request, "admin/subscriptions/subscription/pause.html", context)

    def enable_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: turn a disabled webhook back on (from the home page's "Needs attention")."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        subscription = self.get_object(request, unquote(object_id))
        if not self.has_change_permission(request, subscription):
            raise PermissionDenied
        if subscription_enable(subscription=subscription, actor=actor_user(request.user)):
            self.message_user(
                request,
                _(
                    "The webhook “%(webhook)s” is enabled again. Recover the deliveries that "
                    "failed while it was off if the receiver needs them."
                )
                % {"webhook": subscription.name},
                messages.SUCCESS,
            )
        return HttpResponseRedirect(
            reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
        )

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The body a receiver would get for a topic's sample, as JSON (for the live preview)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        school_id = school_id_parse(request.POST.get("school", ""))
        school = None
        if school_id is not None:
            school = schools_visible(request).filter(pk=school_id).first()
        if school is None:
            return JsonResponse({"error": _("Choose the school first.")}, status=400)
        try:
            body = subscription_body_preview(
                body_template=request.POST.get("body_template", ""),
                content_type=request.POST.get("content_type", "json"),
                event_type=request.POST.get("event_type", ""),
                school=school,
                profile=request.POST.get("profile") or "standard",
            )
        except ValidationError as exc:
            return JsonResponse({"error": " ".join(exc.messages)}, status=400)
        return JsonResponse({"body": body})


def _replay_message(result: ReplayResult) -> str:
    message = ngettext(
        "%(count)s event is being sent again to the webhook, each as a new delivery.",
        "%(count)s events are being sent again to the webhook, each as a new delivery.",
        result.queued,
    ) % {"count": number_format(result.queued, force_grouping=True)}
    if result.failed:
        message += " " + ngettext(
            "%(count)s could not be rendered with the webhook's body template; see its "
            "delivery for why.",
            "%(count)s could not be rendered with the webhook's body template; see their "
            "deliveries for why.",
            result.failed,
        ) % {"count": number_format(result.failed, force_grouping=True)}
    return message


def _resumed_text(subscription: Subscription, held: int) -> str:
    """What resuming ``subscription`` did, with the count of deliveries it held."""
    if not held:
        return _(
            "The webhook “%(webhook)s” is resumed; no delivery was held while it was paused."
        ) % {"webhook": subscription.name}
    return ngettext(
        "The webhook “%(webhook)s” is resumed: %(count)s delivery held while it was "
        "paused is being sent.",
        "The webhook “%(webhook)s” is resumed: %(count)s deliveries held while it was "
        "paused are being sent, oldest first.",
        held,
    ) % {"webhook": subscription.name, "count": number_format(held, force_grouping=True)}


def _pause_text(subscription: Subscription) -> str:
    """What pausing did, for the message after it."""
    if subscription.resume_at is None:
        return _(
            "The webhook “%(webhook)s” is paused: its events are kept and sent when you resume it."
        ) % {"webhook": subscription.name}
    return _(
        "The webhook “%(webhook)s” is paused until %(time)s: its events are kept and sent then."
    ) % {
        "webhook": subscription.name,
        "time": datetime_text(subscription.resume_at, subscription.school.timezone),
    }


def _grace_text() -> str:
    hours = settings.WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS / 3600
    return ngettext("%(hours)s hour", "%(hours)s hours", round(hours)) % {"hours": f"{hours:g}"}


def _gone_is_404(page: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A webhook another request deletes after this page looked it up, before its service
    acts on it (which then raises ``DoesNotExist``): the 404 the page gives a moment later."""

    @functools.wraps(page)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return page(request, *args, **kwargs)
        except Subscription.DoesNotExist as exc:
            raise Http404("This webhook no longer exists.") from exc

    return wrapped
