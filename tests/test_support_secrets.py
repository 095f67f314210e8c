"""Support staff open every page that shows a webhook or an attempt, after real deliveries to a
receiver that echoes every request back, and read none of the webhook's secrets: the basic-auth
password (alone, as ``user:password``, in base64), the values of secret headers (by their name
and marked so), an API key header and the URL's query token. Attempts an earlier release stored
with the secrets in them are shown masked too.
"""

from __future__ import annotations

import pytest

from deliveries.models import AttemptTrigger, Delivery, DeliveryAttempt
from deliveries.services import delivery_attempt, event_fan_out
from events.services import event_publish
from subscriptions.services import subscription_update
from tests.subscriptions.factories import EVERY_SECRET, webhook_with_every_secret
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


def _leaks(text: str) -> list[str]:
    return [kind for kind, secret in EVERY_SECRET.items() if secret in text]


@pytest.fixture
def deliveries(school, receiver):
    """A delivered echo, a failed one (refused connection), and an attempt as an earlier
    release stored it: secrets in clear everywhere."""
    echo = webhook_with_every_secret(school=school, receiver=receiver, name="Echo")
    down = webhook_with_every_secret(school=school, receiver=receiver, name="Down")
    down = subscription_update(
        subscription=down, url=f"http://127.0.0.1:9/down?token={EVERY_SECRET['URL query token']}"
    )
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    delivery_ids = event_fan_out(event_id=event.id)
    for delivery_id in delivery_ids:
        delivery_attempt(delivery_id=delivery_id)
    legacy = Delivery.objects.get(subscription=down)
    raw = " ".join(EVERY_SECRET.values())
    DeliveryAttempt.objects.create(
        delivery=legacy,
        number=99,
        trigger=AttemptTrigger.MANUAL,
        started_at=legacy.created_at,
        request_url=f"http://127.0.0.1:9/down?token={EVERY_SECRET['URL query token']}",
        request_headers={
            "Authorization": f"Basic {EVERY_SECRET['credentials base64']}",
            "X-Receiver-Sig": EVERY_SECRET["secret header (by name)"],
        },
        response_status=500,
        response_headers={"X-Echo": raw},
        response_body=raw,
        error_kind=ErrorKind.HTTP_STATUS,
        error_message=raw,
    )
    Delivery.objects.filter(pk=legacy.pk).update(last_error=raw)
    return {"echo": echo, "down": down, "ids": delivery_ids, "legacy": legacy}


def test_support_staff_read_no_secret_on_any_page_of_a_webhook_or_an_attempt(
    client, support_user, deliveries, receiver
):
    echo = deliveries["echo"]
    echoed = DeliveryAttempt.objects.get(delivery__subscription=echo)
    assert echoed.response_status == 200  # the receiver did echo the request back
    client.force_login(support_user)
    pages = {
        "home": client.get("/admin/"),
        "webhooks": client.get("/admin/subscriptions/subscription/"),
        "webhook search": client.get("/admin/subscriptions/subscription/", {"q": "127.0.0.1"}),
        "deliveries": client.get("/admin/deliveries/delivery/"),
        "deliveries of a webhook": client.get(
            "/admin/deliveries/delivery/", {"subscription": str(echo.pk)}
        ),
        "attempts": client.get("/admin/deliveries/deliveryattempt/"),
        "send test (form)": client.get(f"/admin/subscriptions/subscription/{echo.pk}/send-test/"),
        "send test (result)": client.post(
            f"/admin/subscriptions/subscription/{echo.pk}/send-test/",
            {"event_type": "course.created"},
        ),
        "recover": client.get(f"/admin/subscriptions/subscription/{echo.pk}/recover/"),
        "secret": client.post(f"/admin/subscriptions/subscription/{echo.pk}/secret/"),
        "export (CSV)": client.get("/admin/deliveries/delivery/export/csv/"),
        "export (JSON)": client.get(
            "/admin/deliveries/delivery/export/json/", {"subscription": str(echo.pk)}
        ),
        "audit trail": client.get("/admin/audit/auditentry/"),
    }
    for name in ("echo", "down"):
        webhook = deliveries[name]
        pages[f"webhook {name}"] = client.get(
            f"/admin/subscriptions/subscription/{webhook.pk}/change/"
        )
        pages[f"webhook {name} history"] = client.get(
            f"/admin/subscriptions/subscription/{webhook.pk}/history/"
        )
    for delivery in Delivery.objects.filter(subscription__in=[echo, deliveries["down"]]):
        pages[f"delivery {delivery.subscription.name}"] = client.get(
            f"/admin/deliveries/delivery/{delivery.pk}/change/"
        )
        pages[f"event of {delivery.subscription.name}"] = client.get(
            f"/admin/events/event/{delivery.event_id}/change/"
        )
    for attempt in DeliveryAttempt.objects.all():
        pages[f"attempt {attempt.pk}"] = client.get(
            f"/admin/deliveries/deliveryattempt/{attempt.pk}/change/", follow=True
        )

    statuses = {name: response.status_code for name, response in pages.items()}
    assert statuses == {name: 403 if name == "secret" else 200 for name in pages}
    texts = {
        name: (
            b"".join(response.streaming_content) if response.streaming else response.content
        ).decode()
        for name, response in pages.items()
    }
    assert echo.name in texts["export (JSON)"]  # the exports did list the deliveries
    leaks = {name: _leaks(text) for name, text in texts.items()}
    assert leaks == {name: [] for name in pages}
    # They do see the attempts: the answers are there, masked.
    legacy_page = texts[f"delivery {deliveries['down'].name}"]
    assert "[hidden]" in legacy_page
    assert "#99" in legacy_page
    assert "/echo-echo?token=…" in texts["send test (result)"]


def test_searching_webhooks_never_reads_the_urls_query_string(client, support_user, deliveries):
    client.force_login(support_user)

    def found(term: str) -> int:
        response = client.get("/admin/subscriptions/subscription/", {"q": term})
        return response.context["cl"].result_count

    assert found("127.0.0.1") == 2  # the URL up to its query string still matches
    assert found("/down") == 1
    assert found("echo") == 1
    # Every prefix of the token finds what a random string finds: nothing to read from.
    token = EVERY_SECRET["URL query token"]
    assert {found(token[:length]) for length in range(1, len(token) + 1)} == {found("zzzz")} == {0}
    assert found("token=") == 0
