from django.contrib.admin.apps import AdminConfig


class WebhooksAdminConfig(AdminConfig):
    """The admin, with the project's site (webhooks_project/admin_site.py) as the default one."""

    default_site = "webhooks_project.admin_site.WebhooksAdminSite"
