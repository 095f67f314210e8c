"""The demo receiver that ``make run`` points its demo subscription at."""

from __future__ import annotations

import hmac
import time
import uuid

from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from subscriptions.crypto import secret_decrypt
from subscriptions.selectors import signing_secrets_active

from .models import Delivery
from .signing import sign_v1

TOLERANCE_SECONDS = 5 * 60


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
