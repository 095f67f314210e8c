from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = _("Webhooks")

    def ready(self) -> None:
        from .selectors import fan_out_kept_forget

        connection_created.connect(fan_out_kept_forget, dispatch_uid="subscriptions.kept_forget")
