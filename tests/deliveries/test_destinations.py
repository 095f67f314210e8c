"""Destination protection (SSRF): hostile destinations are refused on save and at send, and no
connection is ever opened to them.

Connections are observed with the suite's audit hook on ``socket.connect`` (tests/network.py):
it sees every connect this process makes and refuses any to a non-loopback address, so a broken
guard fails the test without sending traffic anywhere.
"""

from __future__ import annotations

import ipaddress

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from deliveries.services import delivery_attempt, event_fan_out
from events.services import event_publish
from subscriptions.models import Subscription
from subscriptions.services import subscription_create
from tests.resolver import PUBLIC_ADDRESS
from tests.subscriptions.factories import SubscriptionFactory
from webhook_engine.destinations import DestinationPolicy
from webhook_engine.errors import ErrorKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict(settings):
    """The production default: no trusted networks."""
    settings.WEBHOOKS_ALLOWED_NETWORKS = []


# (URL, answers for the host name when it is a name)
HOSTILE = [
    ("http://127.0.0.1/hook", None),
    ("http://127.255.255.254:8080/hook", None),
    ("http://2130706433/hook", None),  # decimal 127.0.0.1
    ("http://0x7f000001/hook", None),  # hex
    ("http://0177.0.0.1/hook", None),  # octal
    ("http://127.1/hook", None),  # short form
    ("http://0x7f.1/hook", None),
    ("http://0/hook", None),
    ("http://0.0.0.0/hook", None),
    ("http://10.0.0.5/hook", None),
    ("http://172.16.3.4/hook", None),
    ("http://192.168.1.1/hook", None),
    ("http://169.254.169.254/latest/meta-data/", None),  # AWS, GCP, Azure metadata
    ("http://100.100.100.200/latest/meta-data/", None),  # Alibaba metadata (carrier NAT)
    ("http://192.0.0.192/opc/v1/instance/", None),  # Oracle metadata
    ("http://192.0.0.8/hook", None),  # reported global by Python 3.11
    ("http://100.64.0.1/hook", None),
    ("http://198.18.0.1/hook", None),
    ("http://224.0.0.1/hook", None),
    ("http://240.0.0.1/hook", None),
    ("http://255.255.255.255/hook", None),
    ("http://[::1]/hook", None),
    ("http://[::]/hook", None),
    ("http://[::ffff:127.0.0.1]/hook", None),  # IPv4-mapped
    ("http://[::ffff:7f00:1]/hook", None),
    ("http://[::ffff:a9fe:a9fe]/hook", None),  # mapped metadata
    ("http://[::127.0.0.1]/hook", None),  # IPv4-compatible
    ("http://[64:ff9b::7f00:1]/hook", None),  # NAT64 of loopback
    ("http://[64:ff9b::a9fe:a9fe]/hook", None),  # NAT64 of metadata
    ("http://[2002:7f00:1::]/hook", None),  # 6to4 of loopback
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook", None),  # Teredo, client 127.0.0.1
    ("http://[fe80::1]/hook", None),
    ("http://[fc00::1]/hook", None),
    ("http://[fd00:ec2::254]/latest/meta-data/", None),  # AWS IPv6 metadata
    ("http://[ff02::1]/hook", None),
    ("http://[2001:db8::1]/hook", None),
    ("http://[fec0::1]/hook", None),  # site-local
    ("http://[64:ff9b:1:a00:1:0:808:808]/hook", None),  # local-use NAT64
    ("http://localhost/hook", None),
    ("http://LOCALHOST./hook", None),
    ("http://metadata.google.internal/computeMetadata/v1/", ["169.254.169.254"]),
    ("http://instance-data/latest/", ["169.254.169.254"]),
    ("http://127.0.0.1.nip.io/hook", ["127.0.0.1"]),
    ("http://intranet.example.org/hook", ["192.168.0.10"]),
    ("http://mixed.example.org/hook", [PUBLIC_ADDRESS, "10.0.0.1"]),  # one bad answer is enough
    ("http://mixed6.example.org/hook", [PUBLIC_ADDRESS, "::1"]),
    ("http://mapped.example.org/hook", ["::ffff:10.0.0.1"]),
    ("https://secure-intranet.example.org/hook", ["172.20.0.1"]),
]
NOT_HTTP = ["file:///etc/passwd", "gopher://127.0.0.1:25/", "ftp://files.example.org/"]


def test_the_table_has_at_least_forty_hostile_destinations():
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize(("url", "answers"), HOSTILE, ids=[url for url, _ in HOSTILE])
def test_a_hostile_destination_is_refused_on_save(strict, school, resolver, connects, url, answers):
    if answers:
        resolver.answer(url.split("/")[2], answers)

    with pytest.raises(ValidationError) as raised:
        subscription_create(school=school, name="Hook", url=url, topics=["*"])

    [message] = raised.value.message_dict["url"]
    # Numeric forms, single-label hosts and a trailing dot already fail Django's URL validator.
    assert (
        message == "Enter a valid URL." or "webhooks are only sent to public addresses" in message
    )
    assert Subscription.objects.count() == 0
    assert connects == []


@pytest.mark.parametrize(("url", "answers"), HOSTILE, ids=[url for url, _ in HOSTILE])
def test_a_hostile_destination_is_refused_at_send_without_connecting(
    strict, school, resolver, connects, url, answers
):
    if answers:
        resolver.answer(url.split("/")[2], answers)
    # Saved before the rules changed, or behind the service's back: the send checks again.
    SubscriptionFactory(school=school, url=url, topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)

    attempt = delivery_attempt(delivery_id=delivery_id)

    assert attempt.error_kind == ErrorKind.BLOCKED
    assert "webhooks are only sent to public addresses" in attempt.error_message
    assert connects == []


@pytest.mark.parametrize("url", NOT_HTTP)
def test_other_schemes_are_refused_on_save_and_at_send(strict, school, connects, url):
    with pytest.raises(ValidationError) as raised:
        subscription_create(school=school, name="Hook", url=url, topics=["*"])
    SubscriptionFactory(school=school, url=url, topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    attempt = delivery_attempt(delivery_id=delivery_id)

    assert raised.value.message_dict["url"]
    assert attempt.error_kind == ErrorKind.INVALID_URL
    assert connects == []


def test_a_name_that_changes_its_answer_is_connected_to_at_the_checked_address(
    strict, school, resolver, connects
):
    # DNS rebinding: public when checked, loopback right after. The transport resolves once per
    # connection and connects to the address it checked, so loopback is never tried.
    resolver.answer("rebind.example.org", [PUBLIC_ADDRESS], ["127.0.0.1"])
    SubscriptionFactory(school=school, url="http://rebind.example.org/hook", topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)

    attempt = delivery_attempt(delivery_id=delivery_id)

    assert connects == [PUBLIC_ADDRESS]  # refused by the suite's guard: nothing left the host
    assert attempt.error_kind == ErrorKind.CONNECTION


def test_a_name_that_is_private_when_checked_on_save_is_refused_even_if_public_later(
    strict, school, resolver, connects
):
    resolver.answer("rebind.example.org", ["127.0.0.1"], [PUBLIC_ADDRESS])

    with pytest.raises(ValidationError):
        subscription_create(
            school=school, name="Hook", url="http://rebind.example.org/hook", topics=["*"]
        )

    assert connects == []


def test_a_name_that_does_not_resolve_is_a_clear_error_on_save(strict, school):
    with pytest.raises(ValidationError) as raised:
        subscription_create(
            school=school, name="Hook", url="https://no-such-host.invalid/hook", topics=["*"]
        )

    assert raised.value.message_dict["url"] == [
        "The host name could not be resolved; check the URL."
    ]


@pytest.mark.parametrize(
    "host",
    [
        "crm\u05d0.example.org",  # left-to-right and right-to-left letters in one label
        "\ue000.example.org",  # a private-use character
        "\u3002.example.org",  # an ideographic full stop: an empty label
    ],
)
def test_a_host_name_no_resolver_can_encode_is_a_clear_translated_error_on_save(
    strict, school, host
):
    # Django's URL validator lets these through; the resolver's IDNA encoding refuses them.
    with pytest.raises(ValidationError) as raised, translation.override("fr"):
        subscription_create(school=school, name="Hook", url=f"https://{host}/hook", topics=["*"])

    assert raised.value.message_dict["url"] == [
        f"{host} n’est pas un nom d’hôte valide\xa0; vérifiez l’URL."
    ]
    assert not Subscription.objects.exists()


def test_trusted_networks_are_allowed_and_nothing_else_is(settings, school, receiver, connects):
    settings.WEBHOOKS_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    subscription_create(school=school, name="Local", url=receiver.url("/ok"), topics=["*"])
    with pytest.raises(ValidationError):
        subscription_create(school=school, name="Private", url="http://10.0.0.5/", topics=["*"])

    assert Subscription.objects.filter(name="Local").exists()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address in IPv6 form"),
        ("169.254.169.254", "a link-local address (where cloud metadata services live)"),
        ("10.1.2.3", "a private-network address"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address is public
    ],
)
def test_the_policy_names_what_kind_of_address_is_refused(address, reason):
    assert DestinationPolicy().blocked_reason(ipaddress.ip_address(address)) == reason


def test_credentials_in_the_url_are_refused_on_save_and_at_send(strict, school, connects):
    url = "https://user:secret@crm.example.org/hooks"

    with pytest.raises(ValidationError) as raised:
        subscription_create(school=school, name="Hook", url=url, topics=["*"])
    SubscriptionFactory(school=school, url=url, topics=["*"])
    event = event_publish(school=school, type="course.created", data={"course": {"id": "c1"}})
    [delivery_id] = event_fan_out(event_id=event.id)
    attempt = delivery_attempt(delivery_id=delivery_id)

    [message] = raised.value.message_dict["url"]
    assert message.startswith("Remove the user name and password from the URL")
    assert attempt.error_kind == ErrorKind.INVALID_URL
    assert connects == []
