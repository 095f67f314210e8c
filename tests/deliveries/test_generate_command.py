"""``deliveries_generate`` (synthetic deliveries for measuring the admin) refuses arguments it
cannot use with one message naming each, before writing anything."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from deliveries.models import Delivery
from subscriptions.models import Subscription

pytestmark = pytest.mark.django_db


def test_every_unusable_argument_is_named_at_once_and_nothing_is_written():
    with pytest.raises(CommandError) as refused:
        call_command(
            "deliveries_generate",
            "--schools=0",
            "--webhooks=0",
            "--days=0",
            "--failed-share=1.5",
            "--count=10",
        )

    message = str(refused.value)
    assert "--schools must be at least 1 (got 0)." in message
    assert "--webhooks must be at least 1 (got 0)." in message
    assert "--days must be more than 0 (got 0.0)." in message
    assert "--failed-share must be from 0 to 1 (got 1.5)." in message
    assert not Subscription.objects.exists()
    assert not Delivery.objects.exists()
