"""REST API of the event catalog and of events: /api/v1/event-types/ and /api/v1/events/."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from common.api import (
    UNAUTHENTICATED,
    DetailSerializer,
    ErrorsSerializer,
    NewestFirstCursorPagination,
    PageNumberPagination,
    PayloadTooLarge,
)
from common.filters import filter_repeated_problem, filter_value_problem
from schools.models import School
from schools.permissions import IsSchoolOrPlatformClient, api_client, client_school
from schools.selectors import school_by_slug

from .models import Event, EventType, ScheduledEvent, ScheduledEventStatus
from .selectors import (
    event_types_catalog,
    events_visible,
    scheduled_events_visible,
)
from .serializers import (
    EventAccepted,
    EventDetailOutput,
    EventInput,
    EventOutput,
    EventTypeOutput,
    ScheduledEventInput,
    ScheduledEventMoveInput,
    ScheduledEventOutput,
)
from .services import (
    EventIdempotencyConflict,
    event_publish_or_get,
    idempotency_key_reserved_check,
    idempotency_key_validate,
    scheduled_event_cancel,
    scheduled_event_create_or_get,
    scheduled_event_move,
)

AUTH_ERRORS = {
    401: UNAUTHENTICATED,
    404: OpenApiResponse(DetailSerializer, description="Not found."),
}


@extend_schema_view(
    list=extend_schema(
        summary="List the event catalog", responses={200: EventTypeOutput, **AUTH_ERRORS}
    ),
    retrieve=extend_schema(
        summary="Get an event type with its sample payload and JSON Schema",
        responses={200: EventTypeOutput, **AUTH_ERRORS},
    ),
)
class EventTypeViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsSchoolOrPlatformClient]
    serializer_class = EventTypeOutput
    pagination_class = PageNumberPagination
    lookup_field = "key"
    lookup_value_regex = r"[a-z0-9_.]+"

    def get_queryset(self) -> QuerySet[EventType]:
        return event_types_catalog()


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description=(
        "Publishing again with the same key and body returns the first event (202, replayed; "
        "a scheduled one with its status now); the same key with another body is a 409. Keys "
        "beginning with cron.midnight: or scheduled-event: are the product's own (a 400)."
    ),
)
SCHOOL_FILTER = OpenApiParameter(
    "school", str, OpenApiParameter.QUERY, description="A school's slug (platform key only)."
)


@extend_schema_view(
    list=extend_schema(
        summary="List events, newest first",
        parameters=[SCHOOL_FILTER],
        responses={
            200: EventOutput,
            400: OpenApiResponse(
                ErrorsSerializer, description="An invalid filter or cursor, by parameter."
            ),
            401: AUTH_ERRORS[401],
        },
    ),
    retrieve=extend_schema(
        summary="Get an event with the deliveries it produced",
        responses={200: EventDetailOutput, **AUTH_ERRORS},
    ),
    create=extend_schema(
        summary="Publish an event (platform key)",
        description=(
            "Stores the event and fans it out to every matching webhook of the school. The data "
            "is validated against the event type's JSON Schema."
        ),
        request=EventInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: EventAccepted,
            400: OpenApiResponse(ErrorsSerializer, description="Invalid event, by field."),
            401: AUTH_ERRORS[401],
            403: OpenApiResponse(DetailSerializer, description="Not the platform's key."),
            409: OpenApiResponse(ErrorsSerializer, description="Idempotency-Key reused."),
            404: OpenApiResponse(DetailSerializer, description="No school with that slug."),
            413: OpenApiResponse(DetailSerializer, description="The request is too large."),
        },
    ),
)
class EventViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Event.objects.none()  # for the schema; requests use get_queryset
    permission_classes = [IsSchoolOrPlatformClient]
    pagination_class = NewestFirstCursorPagination
    lookup_value_regex = "[0-9a-f-]{36}"

    def get_queryset(self) -> QuerySet[Event]:
        client = api_client(self.request)
        # Given empty it is refused whatever the key, as the schema says; a school key's is
        # otherwise ignored (it reads its own school's).
        slug = _filter_value(self.request.query_params, "school")
        if client.is_platform:
            queryset = events_visible(school_id=None)
            return queryset.filter(school__slug=slug) if slug else queryset
        return events_visible(school_id=client_school(self.request).pk)

    def get_serializer_class(self) -> type[BaseSerializer]:
        return EventDetailOutput if self.action == "retrieve" else EventOutput

    def create(self, request: Request) -> Response:
        if not api_client(request).is_platform:
            return Response(
                {"detail": _("Publishing events needs the platform's key.")},
                status=status.HTTP_403_FORBIDDEN,
            )
        limit = settings.WEBHOOKS_INGEST_MAX_BYTES
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > limit or len(request.body) > limit:
            raise PayloadTooLarge(
                _("The request body is larger than %(limit)s bytes.") % {"limit": limit}
            )
        serializer = EventInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = request.headers.get("Idempotency-Key")
        idempotency_key_reserved_check(key=key)
        try:
            body = self._accept(data, key)
        except (IntegrityError, School.DoesNotExist):
            # A school or event type deleted (or a slug moved) a moment ago can still be in
            # this process's lookups; read them afresh, which answers 404 or 400 if that is
            # what happened.
            caches["lookups"].clear()
            body = self._accept(data, key)
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def _accept(self, data: dict[str, Any], key: str | None) -> dict[str, Any]:
        school = school_by_slug(data["school"])
        if school is None:
            raise NotFound(_("No school with the slug %(slug)s.") % {"slug": repr(data["school"])})
        started = timezone.now()
        deliver_at = data.get("deliver_at")
        # A retry of a scheduled publish (same key) stays one, even once its time has come:
        # published now under the key it would be a second event.
        usable_key = _usable_key(key)
        # Looked up by the slug, as the event is stored (``school_slug``): another process may
        # have given it to another school since this process kept its copy.
        scheduled_first = _scheduled_under_key(data["school"], usable_key)
        if deliver_at is not None and (deliver_at > started or scheduled_first is not None):
            if "occurred_at" in data:
                raise ValidationError(
                    {
                        "occurred_at": [
                            _("A scheduled event occurs at its deliver_at; leave occurred_at out.")
                        ]
                    }
                )
            published_first = _published_under_key(data["school"], usable_key)
            if published_first is not None:
                raise EventIdempotencyConflict(
                    {
                        "idempotency_key": [
                            _(
                                "This idempotency key was already used for event %(event)s, "
                                "published at once: use another key to schedule one."
                            )
                            % {"event": published_first.id}
                        ]
                    }
                )
            school = School.objects.filter(slug=data["school"]).first()  # this very one
            if school is None:
                raise School.DoesNotExist
            scheduled, created = scheduled_event_create_or_get(
                school=school, type=data["type"], data=data["data"], due_at=deliver_at, key=key
            )
            accepted = {
                "id": scheduled.id,
                # A retry answers what became of it since (cancelled, published, failed).
                "status": scheduled.status,
                "deliver_at": scheduled.due_at,
                "replayed": not created,
            }
        else:
            if scheduled_first is not None:
                raise EventIdempotencyConflict(
                    {
                        "idempotency_key": [
                            _(
                                "This idempotency key was already used to schedule event "
                                "%(event)s at %(due)s: use another key to publish one now."
                            )
                            % {
                                "event": scheduled_first.id,
                                "due": scheduled_first.due_at.isoformat(),
                            }
                        ]
                    }
                )
            # A deliver_at already past is when the event occurred, as it is for one that
            # waited for its time: the same request must not give another occurred_at for
            # arriving a moment later.
            occurred_at = data.get("occurred_at", deliver_at)
            event, created = event_publish_or_get(
                school=school,
                type=data["type"],
                data=data["data"],
                occurred_at=occurred_at,
                idempotency_key=key,
                school_slug=data["school"],
            )
            if not created and occurred_at not in (None, event.occurred_at):
                raise EventIdempotencyConflict(
                    {
                        "idempotency_key": [
                            _(
                                "This idempotency key was already used for event %(event)s, "
                                "which occurred at %(when)s, not at the time given."
                            )
                            % {"event": event.id, "when": event.occurred_at.isoformat()}
                        ]
                    }
                )
            accepted = {
                "id": event.id,
                "status": "published",
                "deliver_at": None,
                "replayed": not created,
            }
        return EventAccepted({**accepted, "school": school.slug, "type": data["type"]}).data


def _usable_key(key: str | None) -> str | None:
    """The Idempotency-Key as publishing stores it; None for none, or for one publishing and
    scheduling refuse (they answer with the reason)."""
    try:
        return idempotency_key_validate(key)
    except DjangoValidationError:
        return None


def _scheduled_under_key(slug: str, key: str | None) -> ScheduledEvent | None:
    """The scheduled event under this (usable) Idempotency-Key of the school with this slug,
    if any."""
    if key is None:
        return None
    return ScheduledEvent.objects.filter(school__slug=slug, key=key).first()


def _published_under_key(slug: str, key: str | None) -> Event | None:
    """The event published at once under this (usable) Idempotency-Key of the school with
    this slug, if any."""
    if key is None:
        return None
    return Event.objects.filter(school__slug=slug, idempotency_key=key).only("id").first()


def _filter_value(params: Any, name: str) -> str | None:
    """A query filter's value, None if not given; a 400 when it is given empty or twice."""
    if name not in params:
        return None
    value = params.get(name) or ""
    problem = filter_repeated_problem(params, name) or filter_value_problem(value)
    if problem:
        raise ValidationError({name: [problem]})
    return value


SCHEDULED_ERRORS = {
    400: OpenApiResponse(ErrorsSerializer, description="Invalid input, by field."),
    401: AUTH_ERRORS[401],
    403: OpenApiResponse(DetailSerializer, description="Not the platform's key."),
    404: OpenApiResponse(DetailSerializer, description="No such scheduled event."),
    409: OpenApiResponse(ErrorsSerializer, description="Already published, or the key is taken."),
}


@extend_schema_view(
    list=extend_schema(
        summary="List scheduled events, the next due first",
        parameters=[
            SCHOOL_FILTER,
            OpenApiParameter("key", str, OpenApiParameter.QUERY, description="Your key for it."),
            OpenApiParameter(
                "status",
                str,
                OpenApiParameter.QUERY,
                enum=[choice.value for choice in ScheduledEventStatus],
            ),
        ],
        responses={200: ScheduledEventOutput, **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a scheduled event", responses={200: ScheduledEventOutput, **AUTH_ERRORS}
    ),
    create=extend_schema(
        summary="Schedule an event (platform key)",
        description=(
            "Published at `due_at` (at most a few seconds late), exactly once. Scheduling again "
            "with the same `key`, type, data and `due_at` creates nothing and answers 200 with "
            "the first one, in its status now; the same `key` with another body is a 409. An "
            "`Idempotency-Key` header is the `key` when the body has none (a different one is a "
            "400)."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="The scheduled event's `key`, when the body gives none.",
            )
        ],
        request=ScheduledEventInput,
        responses={
            201: OpenApiResponse(ScheduledEventOutput, description="Scheduled."),
            200: OpenApiResponse(
                ScheduledEventOutput, description="Already scheduled under this key: the first."
            ),
            **SCHEDULED_ERRORS,
        },
    ),
    partial_update=extend_schema(
        summary="Move a scheduled event (platform key)",
        description="A course rescheduled: a new time, and optionally new data.",
        request=ScheduledEventMoveInput,
        responses={200: ScheduledEventOutput, **SCHEDULED_ERRORS},
    ),
    destroy=extend_schema(
        summary="Cancel a scheduled event (platform key)",
        description="It is never published. Cancelling a cancelled event is a no-op.",
        responses={200: ScheduledEventOutput, **SCHEDULED_ERRORS},
    ),
)
class ScheduledEventViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Schools read their own; only the platform schedules, moves and cancels."""

    queryset = ScheduledEvent.objects.none()  # for the schema; requests use get_queryset
    serializer_class = ScheduledEventOutput
    permission_classes = [IsSchoolOrPlatformClient]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]  # no PUT
    lookup_value_regex = "[0-9a-f-]{36}"

    def get_queryset(self) -> QuerySet[ScheduledEvent]:
        client = api_client(self.request)
        school_id = None if client.is_platform else client_school(self.request).pk
        queryset = scheduled_events_visible(school_id=school_id)
        params = self.request.query_params
        slug = _filter_value(params, "school")  # refused empty whatever the key, as above
        if slug and client.is_platform:
            queryset = queryset.filter(school__slug=slug)
        key = _filter_value(params, "key")
        if key:
            queryset = queryset.filter(key=key)
        if "status" in params:
            repeated = filter_repeated_problem(params, "status")
            if repeated:
                raise ValidationError({"status": [repeated]})
            if params["status"] not in ScheduledEventStatus.values:
                raise ValidationError(
                    {
                        "status": [
                            _("Give one of %(values)s.")
                            % {"values": ", ".join(ScheduledEventStatus.values)}
                        ]
                    }
                )
            queryset = queryset.filter(status=params["status"])
        return queryset

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        if request.method not in SAFE_METHODS and not api_client(request).is_platform:
            self.permission_denied(
                request, message=_("Scheduling events needs the platform's key.")
            )

    def create(self, request: Request) -> Response:
        serializer = ScheduledEventInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        school = School.objects.filter(slug=data["school"]).first()
        if school is None:
            raise NotFound(_("No school with the slug %(slug)s.") % {"slug": repr(data["school"])})
        key = data.get("key")
        header = request.headers.get("Idempotency-Key")
        if header is not None:
            # The header every POST may carry makes a retry safe here too: it is the key.
            if key is not None and key != header:
                raise ValidationError(
                    {
                        "key": [
                            _(
                                "The key differs from the Idempotency-Key header; give one of "
                                "them, or the same in both."
                            )
                        ]
                    }
                )
            key = header
        scheduled, created = scheduled_event_create_or_get(
            school=school,
            type=data["type"],
            data=data["data"],
            due_at=data["due_at"],
            key=key,
        )
        # The same key and body again returns the first one: nothing was created this time
        # (also when another request with the key created it while this one was at it).
        return Response(
            ScheduledEventOutput(scheduled).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        scheduled = self.get_object()
        serializer = ScheduledEventMoveInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        scheduled = scheduled_event_move(
            scheduled_event=scheduled,
            due_at=serializer.validated_data["due_at"],
            data=serializer.validated_data.get("data"),
        )
        return Response(ScheduledEventOutput(scheduled).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        scheduled = scheduled_event_cancel(scheduled_event=self.get_object())
        return Response(ScheduledEventOutput(scheduled).data)
