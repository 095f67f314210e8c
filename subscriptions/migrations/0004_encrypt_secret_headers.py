"""Encrypt the values of existing custom headers named like a credential.

Until now every custom header value was stored in clear. Those whose name says they carry a
credential (the rule of ``webhook_engine.headers.SECRET_HEADER_NAME``, copied here as it is
today) move, encrypted with the first of ``WEBHOOKS_ENCRYPTION_KEYS``, to
``custom_headers_encrypted``, and read as the mask in ``custom_headers``. Reversible.
"""

import json
import re

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.db import migrations

MASK = "••••••••"
SECRET_HEADER_NAME = re.compile(
    r"auth|token|secret|passw|pwd|api[-_]?key|(^|[-_])key($|[-_])|credential|cookie|session"
    r"|(^|[-_])sig($|[-_])|signature|hmac|bearer|jwt|private",
    re.IGNORECASE,
)


def _fernet():
    return MultiFernet([Fernet(key.encode()) for key in settings.WEBHOOKS_ENCRYPTION_KEYS])


def encrypt_secret_headers(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    fernet = None
    for subscription in Subscription.objects.exclude(custom_headers={}).iterator():
        headers = subscription.custom_headers or {}
        secret = {
            name: value
            for name, value in headers.items()
            if SECRET_HEADER_NAME.search(name) and value != MASK
        }
        if not secret:
            continue
        fernet = fernet or _fernet()
        plaintext = json.dumps(secret, ensure_ascii=False, separators=(",", ":"))
        subscription.custom_headers_encrypted = fernet.encrypt(plaintext.encode()).decode()
        subscription.custom_headers = {
            name: MASK if name in secret else value for name, value in headers.items()
        }
        subscription.save(update_fields=["custom_headers", "custom_headers_encrypted"])


def decrypt_secret_headers(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    fernet = None
    for subscription in Subscription.objects.exclude(custom_headers_encrypted="").iterator():
        fernet = fernet or _fernet()
        secret = json.loads(fernet.decrypt(subscription.custom_headers_encrypted.encode()))
        subscription.custom_headers = {
            name: secret.get(name, value) if value == MASK else value
            for name, value in (subscription.custom_headers or {}).items()
        }
        subscription.custom_headers_encrypted = ""
        subscription.save(update_fields=["custom_headers", "custom_headers_encrypted"])


class Migration(migrations.Migration):
    dependencies = [("subscriptions", "0003_secret_headers")]

    operations = [migrations.RunPython(encrypt_secret_headers, decrypt_secret_headers)]
