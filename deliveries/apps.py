from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class DeliveriesConfig(AppConfig):
    default = True
    name = "deliveries"
    verbose_name = "Deliveries"


class WebhooksAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the product's site (``deliveries/admin_site.py``) as the default one.

    Listed in ``INSTALLED_APPS`` in place of ``django.contrib.admin``.
    """

    default = False
    default_site = "deliveries.admin_site.WebhooksAdminSite"
