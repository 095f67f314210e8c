import factory

from subscriptions.models import Subscription
from subscriptions.services import signing_secret_generate
from tests.schools.factories import SchoolFactory


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    school = factory.SubFactory(SchoolFactory)
    name = factory.Sequence(lambda n: f"Webhook {n}")
    url = "http://127.0.0.1:9/hook"
    topics = factory.LazyFunction(lambda: ["*"])
    content_type = "json"
    signing_secret = factory.LazyFunction(signing_secret_generate)
