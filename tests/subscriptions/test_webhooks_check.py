"""``manage.py webhooks_check``: after an upgrade, every stored webhook the current checks
refuse (settings an earlier release accepted), with its school and the reason."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from subscriptions.models import Subscription
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

LONG_NAME = "X-" + "Tenant" * 20  # 122 characters: the first release took it, now over 100
LATIN1_TEMPLATE = '<?xml version="1.0" encoding="ISO-8859-1"?><course>{{ id|xml }}</course>'


def _check() -> tuple[str, str | None]:
    out = io.StringIO()
    try:
        call_command("webhooks_check", stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_every_webhook_an_earlier_release_stored_that_the_checks_refuse_is_listed(school):
    # Given webhooks as the first release stored them (no check of today's on the way in)
    SubscriptionFactory(school=school, name="Fine")
    long_header = SubscriptionFactory(
        school=school, name="Long header", custom_headers={LONG_NAME: "lycee"}
    )
    latin1 = SubscriptionFactory(
        school=school, name="Latin-1 XML", content_type="xml", body_template=LATIN1_TEMPLATE
    )
    Subscription.objects.filter(pk=latin1.pk).update(is_active=False)

    # When
    output, error = _check()

    # Then each refused webhook is named with its school and reason, and the command fails
    assert error == (
        "2 webhook(s) have settings the current checks refuse: correct them on their pages "
        "(admin or API) before they are next saved."
    )
    lines = output.splitlines()
    assert lines[0] == f"{school.slug}: webhook 'Latin-1 XML' ({latin1.pk}) (disabled)"
    assert lines[1].startswith("  body_template: With the sample payload of ")
    assert 'encoding="ISO-8859-1"' in lines[1]
    long_at = lines.index(f"{school.slug}: webhook 'Long header' ({long_header.pk})")
    assert lines[long_at + 1] == (
        "  custom_headers: The header name 'X-TenantTenantTenantTenantTena…' has 122 characters; "
        "the limit is 100."
    )
    assert not any("'Fine'" in line for line in lines)
    # Nothing was changed
    assert Subscription.objects.get(pk=long_header.pk).custom_headers == {LONG_NAME: "lycee"}


def test_it_succeeds_when_every_webhook_passes(school):
    SubscriptionFactory(school=school, name="Fine")

    output, error = _check()

    assert (output, error) == ("Every stored webhook passes the current checks.\n", None)
