"""Encrypt the values of existing custom headers named like a credential, and URLs with a
query string.

Until now both were stored in clear. Custom headers whose name says they carry a credential
(the rule of ``webhook_engine.headers.SECRET_HEADER_NAME``, copied here as it is today) move,
encrypted with the first of ``WEBHOOKS_ENCRYPTION_KEYS``, to ``custom_headers_encrypted`` and
read as the mask in ``custom_headers``; a URL with query values is encrypted into
``url_encrypted`` and reads with its query values masked in ``url``. Reversible.

The mask is longer than a short query value, so a URL the first release accepted near its 2,000
characters can be longer than that once masked: PostgreSQL's column is then widened for it (a
catalog change, no table rewrite) instead of the whole upgrade stopping on "value too long".
The webhook keeps sending; saving it again asks for a URL that fits, as for a new one.
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


def _query_masked(url):
    """The URL with each query value masked, or None when it has none."""
    base, question, rest = url.partition("?")
    if not question:
        return None
    query, hash_sign, fragment = rest.partition("#")
    parts = [part.partition("=") for part in query.split("&")] if query else []
    if not any(value for _name, _equals, value in parts):
        return None
    masked = "&".join(f"{n}{e}{MASK if v else v}" for n, e, v in parts)
    return f"{base}?{masked}" + (f"#{fragment}" if hash_sign else "")


URL_COLUMN_CHARACTERS = 2000


def _url_column_fit(schema_editor, length):
    """Widen the URL column when a masked URL would not fit in it (PostgreSQL only: SQLite
    does not enforce a varchar's length)."""
    if length > URL_COLUMN_CHARACTERS and schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE subscriptions_subscription ALTER COLUMN url TYPE varchar(%s)"
            % max(length, 3 * URL_COLUMN_CHARACTERS)
        )


def encrypt_urls(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    fernet = None
    urls = Subscription.objects.filter(url__contains="?", url_encrypted="")
    masked = (_query_masked(url) for url in urls.values_list("url", flat=True).iterator())
    _url_column_fit(schema_editor, max((len(url) for url in masked if url), default=0))
    for subscription in Subscription.objects.filter(url__contains="?", url_encrypted="").iterator():
        masked = _query_masked(subscription.url)
        if masked is None:
            continue
        fernet = fernet or _fernet()
        subscription.url_encrypted = fernet.encrypt(subscription.url.encode()).decode()
        subscription.url = masked
        subscription.save(update_fields=["url", "url_encrypted"])


def decrypt_urls(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    fernet = None
    for subscription in Subscription.objects.exclude(url_encrypted="").iterator():
        fernet = fernet or _fernet()
        subscription.url = fernet.decrypt(subscription.url_encrypted.encode()).decode()
        subscription.url_encrypted = ""
        subscription.save(update_fields=["url", "url_encrypted"])


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
    dependencies = [("subscriptions", "0006_secret_headers")]

    operations = [
        migrations.RunPython(encrypt_secret_headers, decrypt_secret_headers),
        migrations.RunPython(encrypt_urls, decrypt_urls),
    ]
