from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class DeliveriesConfig(AppConfig):
    default = True
    name = "deliveries"
    verbose_name = _("Deliveries")

    def ready(self) -> None:
        # Every published event is handed to fan-out after its commit (events' one hook).
        from events.services import event_published_hook_set

        from .services.fan_out import fan_out_promise_sql, fan_out_request

        event_published_hook_set(fan_out_request, promise_sql=fan_out_promise_sql)
        # A webhook with a new URL, or turned back on, starts its circuit breaker afresh.
        from subscriptions.services import subscription_fresh_start_hook_set

        from .services.record import circuit_restart

        subscription_fresh_start_hook_set(circuit_restart)
        # Load the broker's transport and Celery's sending side (redis-py and Celery's result
        # backend: about half a second of imports) when the process starts, not in the first
        # request that publishes an event.
        from celery import current_app

        current_app.connection_for_write().release()
        current_app.backend  # noqa: B018 - imported on first access


class WebhooksAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the product's site (``deliveries/admin_site.py``) as the default one.

    Listed in ``INSTALLED_APPS`` in place of ``django.contrib.admin``.
    """

    default = False
    default_site = "deliveries.admin_site.WebhooksAdminSite"
