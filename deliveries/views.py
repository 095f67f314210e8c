"""Public endpoints of the deliveries app: the platform's public keys, and the demo receiver."""

from __future__ import annotations

import hmac
import time
import uuid

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from subscriptions.crypto import secret_decrypt
from subscriptions.selectors import signing_secrets_active

from . import signing
from .models import Delivery
from .services.attempts import ed25519_keys
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


def public_key_pem(request: HttpRequest) -> HttpResponse:
    """The platform's current Ed25519 public key as PEM, to verify ``v1a`` signatures."""
    keys = ed25519_keys()
    if not keys:
        raise Http404("No Ed25519 signing key is configured.")
    response = HttpResponse(signing.public_key_pem(keys[0]), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'inline; filename="webhooks-public-key.pem"'
    response["Cache-Control"] = "public, max-age=3600"
    return response


def public_keys_jwks(request: HttpRequest) -> JsonResponse:
    """Every Ed25519 public key that may sign, as a JSON Web Key Set (``kid``: RFC 7638)."""
    response = JsonResponse({"keys": [signing.public_key_jwk(key) for key in ed25519_keys()]})
    response["Cache-Control"] = "public, max-age=3600"
    return response
