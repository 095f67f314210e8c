import factory

from subscriptions.crypto import secret_encrypt
from subscriptions.models import SigningSecret, Subscription
from subscriptions.services import signing_secret_generate
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
