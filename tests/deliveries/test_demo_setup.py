"""``manage.py demo_setup``: the demo school and its webhooks, in development and in production."""

from io import StringIO

import pytest
from django.core.management import call_command

from subscriptions.models import Subscription

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("keys", [[], ["whsk_" + "A" * 43 + "="]])
def test_the_demo_signs_with_ed25519_only_where_a_key_is_configured(
    catalog, settings, keys, tmp_path
):
    """Without WEBHOOKS_ED25519_KEYS (production, unless set) the demo still sets up, its XML
    webhook signed with HMAC alone, instead of failing on the v1a signature it cannot make."""
    settings.WEBHOOKS_ED25519_KEYS = keys
    settings.WEBHOOKS_DATA_DIR = tmp_path
    out = StringIO()

    call_command("demo_setup", "--no-events", stdout=out)

    webhooks = dict(Subscription.objects.values_list("name", "sign_ed25519"))
    assert webhooks["Demo receiver (XML, BrainCert body)"] is bool(keys)
    assert len(webhooks) == 4
    assert "Log in at http://127.0.0.1:8000/admin/ as admin / " in out.getvalue()
