"""Endpoints of the deliveries app: the delivery log API (/api/v1/deliveries/), the platform's
public keys (Ed25519 for ``v1a``, ECDSA for the edudip profile), the demo receiver,
``GET /health/`` and ``GET /metrics``."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from audit.services import actor_api_key
from common.api import (
    NOT_A_SCHOOL_KEY,
    UNAUTHENTICATED,
    DetailSerializer,
    ErrorsSerializer,
    NewestFirstCursorPagination,
)
from common.clock import db_now
from common.metrics import NOT_CONFIGURED, client_address, metrics_access_refusal
from common.views import database_unreachable, first_line, unavailable_response
from schools.permissions import IsSchoolClient, client_school
from subscriptions.crypto import secret_decrypt
from subscriptions.selectors import signing_secrets_active
from webhook_engine import signing
from webhook_engine.signing import sign_v1

from .export import EXPORT_FORMATS, deliveries_export_response
from .filters import DeliveryFilter
from .metrics import metrics_render
from .models import Delivery
from .selectors import (
    deliveries_for_school,
    delivery_backlog,
    delivery_with_attempts,
    sweeper_last_run,
)
from .serializers import (
    DeliveryDetailOutput,
    DeliveryOutput,
    ExportRowOutput,
    RetriggerOutput,
)
from .services import RetriggerOutcome, delivery_retrigger
from .services.config import ecdsa_key, ed25519_keys

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 5 * 60
# /health/ gives up on the broker after this many seconds.
_BROKER_CHECK_SECONDS = 2.0


@csrf_exempt
@require_POST
def demo_receiver(request: HttpRequest) -> JsonResponse:
    """Accept a delivery whose Standard Webhooks signature verifies, refuse it otherwise."""
    if not settings.WEBHOOKS_DEMO_RECEIVER:
        raise Http404
    msg_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    signatures = request.headers.get("webhook-signature", "").split()
    try:
        delivery = Delivery.objects.select_related("subscription").get(
            pk=uuid.UUID(msg_id.removeprefix("msg_"))
        )
        sent_at = int(timestamp)
    except (ValueError, Delivery.DoesNotExist):
        return JsonResponse({"verified": False, "error": "unknown message"}, status=400)
    if abs(time.time() - sent_at) > TOLERANCE_SECONDS:
        return JsonResponse({"verified": False, "error": "timestamp too old"}, status=400)
    expected = [
        sign_v1(
            secret=secret_decrypt(signing_secret.secret_encrypted),
            msg_id=msg_id,
            timestamp=sent_at,
            body=request.body,
        )
        for signing_secret in signing_secrets_active(subscription=delivery.subscription)
    ]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        return JsonResponse({"verified": False, "error": "bad signature"}, status=401)
    return JsonResponse({"verified": True, "type": delivery.event_type})


def public_key_pem(request: HttpRequest) -> HttpResponse:
    """The platform's current Ed25519 public key as PEM, to verify ``v1a`` signatures."""
    keys = ed25519_keys()
    if not keys:
        raise Http404("No Ed25519 signing key is configured.")
    response = HttpResponse(signing.public_key_pem(keys[0]), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'inline; filename="webhooks-public-key.pem"'
    response["Cache-Control"] = "public, max-age=3600"
    return response


def ecdsa_public_key_pem(request: HttpRequest) -> HttpResponse:
    """The platform's ECDSA P-256 public key as PEM, to verify the edudip profile's
    ``X-Edudip-Signature`` (PHP: ``openssl_verify($body, $signature, $pem, OPENSSL_ALGO_SHA256)``).
    """
    key = ecdsa_key()
    if key is None:
        raise Http404("No ECDSA signing key is configured.")
    response = HttpResponse(
        signing.ecdsa_public_key_pem(key), content_type="application/x-pem-file"
    )
    response["Content-Disposition"] = 'inline; filename="webhooks-ecdsa-public-key.pem"'
    response["Cache-Control"] = "public, max-age=3600"
    return response


def public_keys_jwks(request: HttpRequest) -> JsonResponse:
    """Every Ed25519 public key that may sign, as a JSON Web Key Set (``kid``: RFC 7638)."""
    response = JsonResponse({"keys": [signing.public_key_jwk(key) for key in ed25519_keys()]})
    response["Cache-Control"] = "public, max-age=3600"
    return response


class ExportRenderer(BaseRenderer):
    """Chosen by ``?format=csv``; the export streams its own bytes, so it renders nothing."""

    media_type = "text/csv"
    format = "csv"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> Any:
        return b""


class ExportJSONRenderer(JSONRenderer):
    format = "json"


ERRORS = {
    400: OpenApiResponse(
        ErrorsSerializer, description="An invalid filter or cursor, by parameter."
    ),
    401: UNAUTHENTICATED,
    403: NOT_A_SCHOOL_KEY,
    404: OpenApiResponse(DetailSerializer, description="No such delivery in this school."),
}
# A list names no delivery: it has no 404 (a bad cursor is a 400 by parameter, as a bad filter).
LIST_ERRORS = {status: response for status, response in ERRORS.items() if status != 404}
# The export's errors are JSON like every other (``finalize_response``), never its CSV; it names
# no delivery, so it has no 404. drf-spectacular would offer each of its renderers' types.
EXPORT_ERRORS = {
    (status, "application/json"): response for status, response in ERRORS.items() if status != 404
}


@extend_schema_view(
    list=extend_schema(
        summary="List deliveries, newest first",
        responses={200: DeliveryOutput, **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a delivery with every attempt",
        responses={200: DeliveryDetailOutput, **ERRORS},
    ),
)
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Delivery.objects.none()  # for the schema; requests use get_queryset
    permission_classes = [IsSchoolClient]
    pagination_class = NewestFirstCursorPagination
    filterset_class = DeliveryFilter
    lookup_value_regex = "[0-9a-f-]{36}"

    def get_queryset(self) -> QuerySet[Delivery]:
        school_id = client_school(self.request).pk
        if self.action == "list":
            return deliveries_for_school(school_id=school_id)
        return delivery_with_attempts(school_id=school_id)

    def get_serializer_class(self) -> type[BaseSerializer]:
        return DeliveryOutput if self.action in ("list", "export") else DeliveryDetailOutput

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The export's ?format= picks the file's format; anything else is a 400, not DRF's 404.
        if self.action == "export" and not force:
            chosen = request.query_params.get("format", "")
            if chosen not in EXPORT_FORMATS:
                raise ValidationError({"format": [_("Choose csv or json.")]})
        return super().perform_content_negotiation(request, force=force)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        exporting = self.action == "export" or isinstance(
            getattr(response, "accepted_renderer", None), ExportRenderer
        )
        if exporting and isinstance(response, Response):
            # An error of the export (a bad filter, a method it does not take) is JSON, like
            # every other error: the CSV renderer renders nothing.
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response

    @extend_schema(
        summary="Export the filtered delivery log",
        description=(
            "Every delivery the list's filters select (`payload` included), newest first, as a "
            "streamed CSV file or JSON array: id, school, webhook (id, name, URL with its query "
            "values masked), event id and type, state, test, replay number, attempts, created, "
            "last attempt, last response status, last error kind and message (the webhook's "
            "secrets removed), delivered at; times in the school's zone. No body, no request "
            "headers, no credentials."
        ),
        parameters=[
            OpenApiParameter(
                "format", str, enum=list(EXPORT_FORMATS), required=True, description="File format."
            )
        ],
        filters=True,
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, one header."),
            (200, "application/json"): ExportRowOutput(many=True),
            **EXPORT_ERRORS,
        },
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[ExportRenderer, ExportJSONRenderer],
        pagination_class=None,
    )
    def export(self, request: Request) -> HttpResponseBase:
        school_id = client_school(request).pk
        queryset = self.filter_queryset(deliveries_for_school(school_id=school_id))
        return deliveries_export_response(
            queryset.order_by("-created_at", "-id"),
            export_format=request.query_params["format"],
        )

    @extend_schema(
        summary="Retrigger a delivery",
        description=(
            "Sends a delivery now, whatever its state, as soon as a worker takes it (same "
            "webhook-id; the attempt is logged as manual). A delivery waiting between automatic "
            "attempts keeps its schedule if this attempt fails. `outcome` says what happened: "
            "`queued`, `already_queued`, `in_flight` (being sent right now), "
            "`webhook_disabled` (nothing is sent; re-enable the webhook first) or "
            "`template_error` (nothing is sent: the body was never rendered, the webhook's "
            "template failed on the event, and it still does; correct the template first). A "
            "delivery whose template failed is rendered with the webhook's current settings "
            "when it is sent again."
        ),
        request=None,
        responses={202: RetriggerOutput, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def retrigger(self, request: Request, pk: str | None = None) -> Response:
        delivery = self.get_object()
        try:
            outcome = delivery_retrigger(delivery=delivery, actor=actor_api_key(request.auth))
        except Delivery.DoesNotExist:
            raise NotFound() from None  # deleted with its webhook since it was looked up
        return Response(
            RetriggerOutput(
                {"retriggered": outcome == RetriggerOutcome.QUEUED, "outcome": outcome}
            ).data,
            status=202,
        )


def health(request: HttpRequest) -> JsonResponse:
    """``GET /health/``, for load balancers and monitoring: is this deployment able to deliver?

    200 when the database and the broker answer and due deliveries are being picked up;
    503 otherwise, with what is wrong. Reveals counts only, nothing about any school."""
    checks: dict[str, object] = {}
    failures: dict[str, object] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
        lag, awaiting = delivery_backlog(now=db_now())
        checks["oldest_due_delivery_seconds"] = round(lag, 1)
        checks["events_awaiting_fan_out"] = awaiting
        if lag > settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS:
            checks["deliveries"] = "due deliveries are not being picked up: are workers running?"
            failures["deliveries"] = f"due for {lag:.0f} s, not picked up"
            healthy = False
        # What waits without a message is the sweeper's to send (beat runs it every 2 s).
        swept = sweeper_last_run()
        if swept is not None:
            since = (db_now() - swept).total_seconds()
            checks["sweeper_last_run_seconds"] = round(max(since, 0.0), 1)
            if since > settings.WEBHOOKS_HEALTH_MAX_LAG_SECONDS:
                checks["sweeper"] = "the sweeper has not run: is beat running?"
                failures["sweeper"] = f"last run {since:.0f} s ago"
                healthy = False
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        failures["database"] = f"unreachable ({first_line(exc)})"
        healthy = False
    try:
        # Each socket operation bounded too: ensure_connection's timeout only bounds its
        # retries, and a broker that accepts the connection but never answers would hold the
        # request (and a web thread) for as long as it hangs.
        with current_app.connection_for_write(
            connect_timeout=_BROKER_CHECK_SECONDS,
            transport_options={
                "socket_timeout": _BROKER_CHECK_SECONDS,
                "socket_connect_timeout": _BROKER_CHECK_SECONDS,
            },
        ) as broker:
            broker.ensure_connection(max_retries=1, timeout=_BROKER_CHECK_SECONDS)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
        failures["broker"] = f"unreachable ({first_line(exc)})"
        healthy = False
    checks["status"] = "ok" if healthy else "unhealthy"
    response = JsonResponse(checks, status=200 if healthy else 503)
    if not healthy:
        # One line that says why, instead of Django's "Service Unavailable: /health/".
        logger.warning(
            "Health check failed: %s",
            "; ".join(f"{name} {value}" for name, value in failures.items()),
        )
        response._has_been_logged = True  # type: ignore[attr-defined]  # by Django's log_response
    return response


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus metrics, for a request that passes the configured checks
    (``WEBHOOKS_METRICS_TOKEN``, ``WEBHOOKS_METRICS_ALLOWED_NETWORKS``); 404 with neither set,
    401 without the token, 403 from another network. Counts only, nothing a school wrote."""
    refusal = metrics_access_refusal(
        authorization=request.headers.get("Authorization", ""),
        client_address=client_address(
            remote_addr=request.META.get("REMOTE_ADDR", ""),
            forwarded_for=request.headers.get("X-Forwarded-For"),
        ),
    )
    if refusal == NOT_CONFIGURED:
        raise Http404
    if refusal is not None:
        response = HttpResponse(refusal.reason, status=refusal.status, content_type="text/plain")
        for name, value in refusal.headers:
            response[name] = value
        return response
    try:
        body = metrics_render()
    except Exception as exc:
        if not database_unreachable(exc):
            raise
        # Answered here, not by handler500, which Django skips with DEBUG on (`make run`).
        logger.warning(
            "%s /metrics refused, the database is unreachable: %s",
            request.method,
            first_line(exc),
        )
        unavailable = unavailable_response(request)
        unavailable._has_been_logged = True  # type: ignore[attr-defined]  # by log_response
        return unavailable
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
