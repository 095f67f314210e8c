"""What every API endpoint shares: pagination, error shapes and the exception handler."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, pagination, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from webhook_engine.inputs import datetime_problem

from .views import RETRY_AFTER_SECONDS, database_unreachable

logger = logging.getLogger(__name__)


class StrictPageSize:
    """``page_size`` a whole number of at least 1, or a 400 that says so (DRF silently falls back
    to the default for a value it cannot use); a larger one than ``max_page_size`` gives that
    many, as the schema says."""

    page_size: int
    page_size_query_param: str
    max_page_size: int

    def get_page_size(self, request: Any) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        digits = _whole_number_digits(raw)
        if digits is None:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [_("Give a whole number of at least 1.")]}
            )
        # Past ten digits it is past any maximum: no need to read it (nor int()'s digit limit).
        return self.max_page_size if len(digits) > 9 else min(int(digits), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)  # type: ignore[misc]
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (
                    f"Results per page (default {self.page_size}, at most {self.max_page_size})."
                )
            elif parameter["name"] == "page":
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters


def _whole_number_digits(raw: str) -> str | None:
    """The digits of ``raw`` without leading zeros when it is a whole number of at least 1
    written in ASCII digits, else None."""
    digits = raw.lstrip("0")
    return digits if raw.isascii() and raw.isdigit() and digits else None


class NewestFirstCursorPagination(StrictPageSize, pagination.CursorPagination):
    """For logs: stable under inserts, no COUNT(*), newest first. A ``cursor`` the API did not
    give (tampered with, truncated, made up) is a 400 naming it: DRF answers 404 for one it
    cannot decode, and a position that is not a time reached the query as a 400 about nothing."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> list[Any] | None:
        """DRF's, but past a cursor by ``(created_at, id)`` rather than ``created_at`` and an
        offset: rows that share a time (a fan-out's) are then neither skipped nor repeated
        when rows are added or deleted between pages."""
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.cursor = self.decode_cursor(request)
        offset, reverse, raw = self.cursor or (0, False, None)
        position = None if raw is None else str(raw)  # DRF's stubs say an int
        ordering: Any = self.ordering  # fixed: the keyset below is by these two columns
        queryset = queryset.order_by(
            *(pagination._reverse_ordering(ordering) if reverse else ordering)
        )
        if position is not None:
            created_at, _sep, pk = position.partition(POSITION_SEPARATOR)
            before = not reverse  # newest first: the next page is older
            lookup = "lt" if before else "gt"
            bound = {f"created_at__{lookup}e": created_at}
            if pk:
                queryset = queryset.filter(**bound).filter(
                    models.Q(**{f"created_at__{lookup}": created_at})
                    | models.Q(**{f"id__{lookup}": pk})
                )
            else:  # a cursor given before ties were broken by id
                queryset = queryset.filter(**{f"created_at__{lookup}": created_at})
        results = list(queryset[offset : offset + self.page_size + 1])
        self.page = results[: self.page_size]
        following = (
            self._get_position_from_instance(results[-1], self.ordering)
            if len(results) > len(self.page)
            else None
        )
        if reverse:
            self.page.reverse()
            self.has_next = position is not None or offset > 0
            self.has_previous = following is not None
            self.next_position, self.previous_position = position, following
        else:
            self.has_next = following is not None
            self.has_previous = position is not None or offset > 0
            self.next_position, self.previous_position = following, position
        return self.page

    def _get_position_from_instance(self, instance: Any, ordering: Any) -> str:
        return f"{instance.created_at.isoformat()}{POSITION_SEPARATOR}{instance.pk}"

    def decode_cursor(self, request: Any) -> pagination.Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = None
            valid = False
        else:
            valid = cursor is None or _cursor_position_valid(cursor.position)
        if not valid:
            raise exceptions.ValidationError(
                {
                    self.cursor_query_param: [
                        _("This cursor is not one the API gave; start again without it.")
                    ]
                }
            )
        return cursor

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.cursor_query_param:
                parameter["description"] = (
                    "The pagination cursor, from a previous page's next or previous link; "
                    "any other value is a 400."
                )
        return parameters


POSITION_SEPARATOR = " "


def _cursor_position_valid(position: object) -> bool:
    """Whether a cursor's position is what ``encode_cursor`` writes: an aware ``created_at``
    every zone can show, then the row's id (or no position at all)."""
    if position is None:
        return True
    created_at, _sep, pk = str(position).partition(POSITION_SEPARATOR)
    if pk:
        try:
            uuid.UUID(pk)
        except ValueError:
            return False
    try:
        parsed = parse_datetime(created_at)
    except ValueError:
        return False
    return (
        parsed is not None
        and parsed.utcoffset() is not None
        and datetime_problem(parsed, subject="") is None
    )


class PageNumberPagination(StrictPageSize, pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_number(self, request: Any, paginator: Any) -> Any:
        """``page`` a whole number of at least 1 (or ``last``), or a 400 that says so: DRF
        would take an empty value for the first page, which the schema does not allow."""
        raw = request.query_params.get(self.page_query_param)
        if raw is None or raw in self.last_page_strings:
            return super().get_page_number(request, paginator)
        digits = _whole_number_digits(raw)
        if digits is None:
            raise exceptions.ValidationError(
                {self.page_query_param: [_("Give a whole number of at least 1.")]}
            )
        return digits  # however long: a page past the last one is DRF's 404, like any other


class DateTimeField(serializers.DateTimeField):
    """An aware datetime every school's zone can show: a UTC offset within ±14:00 and a date
    away from the ends of the calendar (``webhook_engine.inputs.datetime_problem``)."""

    def to_internal_value(self, value: Any) -> dt.datetime:
        parsed = super().to_internal_value(value)
        original = value if isinstance(value, dt.datetime) else _offset_kept(value)
        if original is not None and original.utcoffset() is None:
            # DRF would read it in the server's zone: a guess, off by hours for most schools.
            raise serializers.ValidationError(
                _("The datetime has no time zone; give an aware datetime.")
            )
        subject = _("This datetime")
        problem = datetime_problem(parsed, subject=subject)
        if problem is None and original is not None:
            problem = datetime_problem(original, subject=subject)  # the offset as written
        if problem:
            raise serializers.ValidationError(problem)
        return parsed


def _offset_kept(value: Any) -> dt.datetime | None:
    """The datetime as written, offset included (DRF converts it to the current zone first)."""
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class StrictCharField(serializers.CharField):
    """A JSON string, or a 400 naming the field: DRF would take a number and store its str()
    (a password ``0`` becoming ``"0"``), which the schema's ``type: string`` does not allow."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictSlugField(StrictCharField, serializers.SlugField):
    """A JSON string that is a slug (a number is refused, as ``StrictCharField`` refuses it)."""


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only: DRF would also read ``"yes"``, ``"1"``, ``1``, ``"on"``...
    as true, a guess the schema's ``type: boolean`` does not promise."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: DRF would also read ``"4"`` and ``4.0`` (and ``true`` as 1), which
    the schema's ``type: integer`` does not promise."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class ModelInputSerializer(serializers.ModelSerializer):
    """An input serializer whose fields come from a model, for services that take them as
    keyword arguments (it is never saved).

    Contract for subclasses: list the writable names in ``Meta.fields`` and declare only the
    fields whose API shape differs from the model's. An optional field the client leaves out
    takes the model field's default, as a plain ``Serializer`` with ``default=`` would: a full
    update (PUT) resets it, a partial one (PATCH) leaves it alone. Text, boolean and integer model
    fields take their JSON type only (``StrictCharField``, ``StrictBooleanField``,
    ``StrictIntegerField``).
    """

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.BooleanField: StrictBooleanField,
        models.IntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.PositiveBigIntegerField: StrictIntegerField,
    }

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        model: Any = self.Meta.model
        model_fields = {field.name: field for field in model._meta.get_fields()}
        for name, field in fields.items():
            model_field = model_fields.get(name)
            if (
                model_field is not None
                and not field.required
                and not field.read_only
                and field.default is serializers.empty
                and getattr(model_field, "has_default", lambda: False)()
            ):
                field.default = model_field.get_default()
        return fields


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class ErrorsSerializer(serializers.Serializer):
    """400 and 409: ``{"errors": {"field": ["message", ...]}}`` (``__all__`` for the whole)."""

    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]  # a field, not the property


class DetailSerializer(serializers.Serializer):
    """Other errors (401, 403, 404, 413, 429): ``{"detail": "message"}``."""

    detail = serializers.CharField()


# Responses every endpoint documents the same way.
UNAUTHENTICATED = OpenApiResponse(
    DetailSerializer, description="Missing, invalid or revoked API key."
)
NOT_A_SCHOOL_KEY = OpenApiResponse(DetailSerializer, description="Not a school's API key.")


def _field_map(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            ("__all__" if key == "non_field_errors" else str(key)): _messages(value)
            for key, value in detail.items()
        }
    return {"__all__": _messages(detail)}


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, list):
        out: list[str] = []
        for item in detail:
            out.extend(_messages(item) if isinstance(item, list | dict) else [str(item)])
        return out
    if isinstance(detail, dict):
        return [
            f"{key}: {message}" for key, value in detail.items() for message in _messages(value)
        ]
    return [str(detail)]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Every error as JSON: validation errors as a field map, the rest as ``detail``."""
    if isinstance(exc, DjangoValidationError):
        # Services' errors; a conflict (a key already used, an event already published) says so
        # with its class's http_status.
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        code = getattr(exc, "http_status", status.HTTP_400_BAD_REQUEST)
        return Response({"errors": detail}, status=code)
    if database_unreachable(exc):
        logger.warning("API request refused, the database is unreachable: %s", exc)
        unavailable = Response(
            {"detail": _("The database cannot be reached; try again in a few seconds.")},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        unavailable["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return unavailable
    if isinstance(exc, Http404):
        # Django's text names the model ("No Subscription matches the given query."), in
        # English: the API's own words, the same for every resource it does not find.
        exc = exceptions.NotFound(_("Not found."))
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            {"detail": _("Something went wrong on our side; it has been logged.")},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"errors": _field_map(exc.detail)}
    elif isinstance(exc, exceptions.ParseError):
        # Malformed JSON is invalid input too: the same shape as every other 400.
        response.data = {"errors": {"__all__": [str(exc.detail)]}}
    return response


@csrf_exempt  # nothing here acts on a session: a POST gets the JSON 404, not a CSRF page
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under /api/ answer JSON, like the rest of the API."""
    return JsonResponse({"detail": _("Not found.")}, status=404)


class UnknownFieldsRefused:
    """For input serializers (mixed in first): a top-level name the API does not know is a
    400 that names it, with the other problems of the input, instead of being ignored: a typo
    (``max_concurrenccy``) would otherwise read as accepted. ``also_accepted()``: names a
    client may send back from what it read (output fields), which are ignored as before."""

    def also_accepted(self) -> set[str]:
        return set()

    def to_internal_value(self, data: Any) -> Any:
        fields: Any = self.fields  # type: ignore[attr-defined]
        unknown = (
            sorted(set(data) - set(fields) - self.also_accepted())
            if isinstance(data, Mapping)
            else []
        )
        errors: dict[str, Any] = {}
        value = None
        try:
            value = super().to_internal_value(data)  # type: ignore[misc]
        except serializers.ValidationError as exc:
            if not unknown or not isinstance(exc.detail, dict):
                raise
            errors = dict(exc.detail)
        for name in unknown:
            errors[name] = [_("Unknown field.")]
        if errors:
            raise serializers.ValidationError(errors)
        return value
