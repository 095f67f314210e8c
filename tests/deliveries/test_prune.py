import datetime as dt

import pytest
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from deliveries.services import deliveries_prune, delivery_attempt, event_fan_out
from events.models import Event
from events.services import event_publish
from tests.receiver import Reply
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_pruning_deletes_old_final_deliveries_and_keeps_pending_and_recent_ones(school, receiver):
    subscription = SubscriptionFactory(school=school, url=receiver.url("/p"))
    receiver.script("/p", default=Reply(status=200))
    ids = []
    for _ in range(4):
        event = event_publish(school=school, type="course.created", data={"course": {"id": "c"}})
        ids += event_fan_out(event_id=event.id)
    old_delivered, old_pending, recent, old_failed = ids
    delivery_attempt(delivery_id=old_delivered)
    delivery_attempt(delivery_id=recent)
    Delivery.objects.filter(pk=old_failed).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None
    )
    long_ago = timezone.now() - dt.timedelta(days=40)
    Delivery.objects.filter(pk__in=[old_delivered, old_pending, old_failed]).update(
        created_at=long_ago
    )
    Event.objects.filter(deliveries__pk__in=[old_delivered, old_pending, old_failed]).update(
        created_at=long_ago
    )

    deleted = deliveries_prune(older_than_days=30, batch_size=1)

    assert deleted == 2
    assert set(Delivery.objects.values_list("pk", flat=True)) == {old_pending, recent}
    assert DeliveryAttempt.objects.filter(delivery_id=old_delivered).count() == 0
    assert Event.objects.count() == 2  # the events of the kept deliveries
    assert subscription.deliveries.count() == 2
