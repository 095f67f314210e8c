import base64

import factory

from subscriptions.crypto import secret_encrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.services import signing_secret_generate, subscription_create
from tests.receiver import Reply
from tests.schools.factories import SchoolFactory


class SubscriptionFactory(factory.django.DjangoModelFactory):
    """A subscription saved as is (no destination check); ``.secret`` is its signing secret."""

    class Meta:
        model = Subscription
        skip_postgeneration_save = True

    school = factory.SubFactory(SchoolFactory)
    name = factory.Sequence(lambda n: f"Webhook {n}")
    url = "http://127.0.0.1:9/hook"
    topics = factory.LazyFunction(lambda: ["*"])
    content_type = "json"

    @factory.post_generation
    def secret(obj, create, extracted, **kwargs):
        obj.secret = extracted or signing_secret_generate()
        if create:
            SigningSecret.objects.create(
                subscription=obj, secret_encrypted=secret_encrypt(obj.secret)
            )


# One of each kind of secret a webhook can hold, with the forms an echo returns them in.
EVERY_SECRET = {
    "password": "pw-Correct-Horse-9",
    "credentials": "lms:pw-Correct-Horse-9",
    "credentials base64": base64.b64encode(b"lms:pw-Correct-Horse-9").decode(),
    "secret header (by name)": "sig-4b1d0c7e",
    "secret header (marked)": "pin-88c1f0a2",
    "api key header": "key-19f3e2d1",
    "URL query token": "qtok-5e6f7a8b",
}


def webhook_with_every_secret(*, school, receiver, name: str = "Echo") -> Subscription:
    """A webhook (through the service, as the admin and the API save it) with basic auth, a
    header secret by its name, one marked secret, an API key header and a URL token, whose
    receiver echoes every request back (``receiver`` scripted here)."""
    path = f"/echo-{name.lower()}?token={EVERY_SECRET['URL query token']}"
    receiver.script(path, default=Reply(echo=True))
    return subscription_create(
        school=school,
        name=name,
        url=receiver.url(path),
        topics=["*"],
        basic_auth_enabled=True,
        basic_auth_username="lms",
        basic_auth_password=EVERY_SECRET["password"],
        custom_headers={
            "X-Receiver-Sig": EVERY_SECRET["secret header (by name)"],
            "X-Tenant-Pin": EVERY_SECRET["secret header (marked)"],
            "X-Api-Key": EVERY_SECRET["api key header"],
            "X-Tenant": "lycee-public",
        },
        secret_headers=["X-Tenant-Pin"],
    )
