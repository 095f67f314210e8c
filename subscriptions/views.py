"""REST API of a school's webhooks: /api/v1/subscriptions/."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from audit.services import actor_api_key
from common.api import NOT_A_SCHOOL_KEY, UNAUTHENTICATED, DetailSerializer, ErrorsSerializer
from deliveries.serializers import AttemptOutput
from deliveries.services import (
    deliveries_recover,
    deliveries_replay,
    delivery_test_send,
    events_replay_count,
    replay_plan,
    subscription_pause,
    subscription_resume,
)
from schools.permissions import IsSchoolClient, PerKeyRateThrottle, client_school

from .models import Profile, Subscription
from .selectors import (
    signing_secret_current,
    signing_secrets_previous_expire_at,
    subscriptions_for_school,
)
from .serializers import (
    CountOutput,
    PauseInput,
    PreviewInput,
    PreviewOutput,
    RecoverInput,
    ReplayInput,
    ReplayOutput,
    SecretOutput,
    SubscriptionCreatedOutput,
    SubscriptionInput,
    SubscriptionOutput,
    TestInput,
)
from .services import (
    subscription_body_preview,
    subscription_create,
    subscription_delete,
    subscription_secret_rotate,
    subscription_update,
)

ERRORS = {
    400: OpenApiResponse(ErrorsSerializer, description="Invalid input, by field."),
    401: UNAUTHENTICATED,
    403: NOT_A_SCHOOL_KEY,
    404: OpenApiResponse(DetailSerializer, description="No such webhook in this school."),
}
READ_ERRORS = {code: ERRORS[code] for code in (401, 403, 404)}
TOO_MANY = OpenApiResponse(DetailSerializer, description="Too many requests with this key.")


@extend_schema_view(
    list=extend_schema(
        summary="List the school's webhooks", responses={200: SubscriptionOutput, **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="Get a webhook", responses={200: SubscriptionOutput, **READ_ERRORS}
    ),
    create=extend_schema(
        summary="Create a webhook",
        request=SubscriptionInput,
        responses={201: SubscriptionCreatedOutput, **ERRORS},
    ),
    update=extend_schema(
        summary="Replace a webhook",
        request=SubscriptionInput,
        responses={200: SubscriptionOutput, **ERRORS},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a webhook",
        request=SubscriptionInput(partial=True),
        responses={200: SubscriptionOutput, **ERRORS},
    ),
    destroy=extend_schema(
        summary="Delete a webhook and its delivery log", responses={204: None, **READ_ERRORS}
    ),
)
class SubscriptionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Subscription.objects.none()  # for the schema; requests use get_queryset
    permission_classes = [IsSchoolClient]
    serializer_class = SubscriptionOutput
    throttle_scope: str | None = None  # set per action (Send Test, preview)
    lookup_value_regex = "[0-9a-f-]{36}"

    def handle_exception(self, exc: Exception) -> Response:
        # A webhook deleted by another request between this one's lookup and its service's
        # write: the 404 the lookup would have given a moment later.
        if isinstance(exc, Subscription.DoesNotExist):
            exc = NotFound()
        return super().handle_exception(exc)

    def get_queryset(self) -> QuerySet[Subscription]:
        # With each webhook's circuit breaker (the deliveries app's), read in the same query.
        return subscriptions_for_school(school_id=client_school(self.request).pk).select_related(
            "endpoint_state"
        )

    def create(self, request: Request) -> Response:
        data = _validated(SubscriptionInput(data=request.data))
        password = data.pop("basic_auth_password", None)
        subscription = subscription_create(
            school=client_school(request),
            basic_auth_password=password,
            actor=actor_api_key(request.auth),
            **data,
        )
        output = SubscriptionCreatedOutput(
            {
                **SubscriptionOutput(subscription).data,
                "signing_secret": signing_secret_current(subscription=subscription),
            }
        )
        return Response(output.data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._change(request, partial=False)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._change(request, partial=True)

    def _change(self, request: Request, *, partial: bool) -> Response:
        subscription = self.get_object()
        data = _validated(SubscriptionInput(data=request.data, partial=partial))
        password = data.pop("basic_auth_password", None)
        subscription = subscription_update(
            subscription=subscription,
            basic_auth_password=password,
            actor=actor_api_key(request.auth),
            **data,
        )
        return Response(SubscriptionOutput(subscription).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        subscription_delete(subscription=self.get_object(), actor=actor_api_key(request.auth))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Rotate the signing secret",
        description=(
            "A new secret signs from now on; the previous ones keep signing too until "
            "`previous_secrets_expire_at` (24 h after the first rotation by default), so "
            "receivers can switch without losing any. It is null when none keeps signing: a "
            "secret the encryption keys cannot read stops at once. A vendor profile whose own "
            "signature carries one secret (Edusign's `x-edusign-hmac`) signs it with the new "
            "secret at once: its receiver needs the new secret now."
        ),
        request=None,
        responses={200: SecretOutput, **READ_ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        subscription = self.get_object()
        secret = subscription_secret_rotate(
            subscription=subscription, actor=actor_api_key(request.auth)
        )
        # What the rotation stored (a rotation made meanwhile by another request only retires
        # this secret in turn: the answer stays true of the secrets before it).
        expires = signing_secrets_previous_expire_at(subscription=subscription)
        return Response(
            SecretOutput({"signing_secret": secret, "previous_secrets_expire_at": expires}).data
        )

    @extend_schema(
        summary="Send Test",
        description=(
            "Sends the event type's sample payload to the webhook now, exactly as a real "
            "delivery, and returns the attempt: the receiver's status, headers and body."
        ),
        request=TestInput,
        responses={200: AttemptOutput, **ERRORS, 429: TOO_MANY},
    )
    @action(
        detail=True,
        methods=["post"],
        throttle_classes=[PerKeyRateThrottle],
        throttle_scope="webhook-test",
    )
    def test(self, request: Request, pk: str | None = None) -> Response:
        subscription = self.get_object()
        data = _validated(TestInput(data=request.data))
        attempt = delivery_test_send(subscription=subscription, event_type=data["event_type"])
        return Response(AttemptOutput(attempt).data)

    @extend_schema(
        summary="Recover failed deliveries",
        description=(
            "Re-sends every failed delivery of the webhook created since `since`, once each, "
            "oldest first, within the webhook's concurrency, rate limit and circuit breaker "
            "(attempts with `trigger` `recovery`); `count` is how many."
        ),
        request=RecoverInput,
        responses={200: CountOutput, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def recover(self, request: Request, pk: str | None = None) -> Response:
        subscription = self.get_object()
        data = _validated(RecoverInput(data=request.data))
        count = deliveries_recover(
            subscription=subscription, since=data["since"], actor=actor_api_key(request.auth)
        )
        return Response(CountOutput({"count": count}).data)

    @extend_schema(
        summary="Replay events to the webhook",
        description=(
            "Re-sends the school's events of `event_types` (default: every type the webhook "
            "receives) published in [`since`, `until`) to this webhook, whatever happened to "
            "them before (delivered, failed, or never sent to it): each becomes a new delivery "
            "of its event (`replay_number` 1, 2, ...), its body rendered now with the webhook's "
            "current settings. Ask with `dry_run: true` first for the count. More than "
            "`max_events` matching events is refused whole (400): narrow the range."
        ),
        request=ReplayInput,
        responses={200: ReplayOutput, 202: ReplayOutput, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str | None = None) -> Response:
        subscription = self.get_object()
        data = _validated(ReplayInput(data=request.data))
        plan = replay_plan(
            subscription=subscription,
            event_types=data.get("event_types"),
            since=data.get("since"),
            until=data.get("until"),
        )
        limit = settings.WEBHOOKS_REPLAY_MAX_EVENTS
        if data["dry_run"]:
            count = events_replay_count(plan=plan)
            output = {"count": count, "queued": 0, "dry_run": True, "max_events": limit}
            return Response(ReplayOutput(output).data)
        result = deliveries_replay(plan=plan, actor=actor_api_key(request.auth))
        output = {
            "count": result.count,
            "queued": result.queued,
            "dry_run": False,
            "max_events": limit,
        }
        return Response(ReplayOutput(output).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Pause the webhook",
        description=(
            "Its events are held, not lost, until it resumes (by hand, or at `resume_at`); then "
            "they go oldest first, one at a time. Send Test still works. Pausing a paused "
            "webhook only changes `resume_at`."
        ),
        request=PauseInput,
        responses={200: SubscriptionOutput, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        subscription = self.get_object()
        data = _validated(PauseInput(data=request.data))
        subscription_pause(
            subscription=subscription,
            until=data.get("resume_at"),
            actor=actor_api_key(request.auth),
        )
        return Response(SubscriptionOutput(self.get_object()).data)

    @extend_schema(
        summary="Resume the webhook",
        description=(
            "The events held while it was paused go out in the order they were published, one "
            "at a time within its rate limit (`catching_up_since` is set meanwhile). Resuming a "
            "webhook that is not paused changes nothing."
        ),
        request=None,
        responses={200: SubscriptionOutput, **READ_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        subscription = self.get_object()
        subscription_resume(subscription=subscription, actor=actor_api_key(request.auth))
        return Response(SubscriptionOutput(self.get_object()).data)

    @extend_schema(
        summary="Preview the body",
        description=(
            "The body a receiver gets for an event type's sample payload, byte for byte: under "
            "the webhook's delivery profile (or `profile`), with its template (or "
            "`body_template`)."
        ),
        request=PreviewInput,
        responses={200: PreviewOutput, **ERRORS, 429: TOO_MANY},
    )
    @action(
        detail=True,
        methods=["post"],
        throttle_classes=[PerKeyRateThrottle],
        throttle_scope="body-preview",
    )
    def preview(self, request: Request, pk: str | None = None) -> Response:
        subscription = self.get_object()
        data = _validated(PreviewInput(data=request.data))
        content_type = data.get("content_type", subscription.content_type)
        profile = data.get("profile", subscription.profile)
        own_template = subscription.body_template if profile == Profile.STANDARD else ""
        body = subscription_body_preview(
            body_template=data.get("body_template", own_template),
            content_type=content_type,
            event_type=data["event_type"],
            school=subscription.school,
            profile=profile,
        )
        return Response(PreviewOutput({"content_type": content_type, "body": body}).data)


def _validated(serializer: object) -> dict:
    serializer.is_valid(raise_exception=True)  # type: ignore[attr-defined]
    return dict(serializer.validated_data)  # type: ignore[attr-defined]
