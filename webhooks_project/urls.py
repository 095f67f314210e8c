from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from common.api import api_not_found
from common.schema import SchemaView, SwaggerView
from deliveries.views import (
    demo_receiver,
    ecdsa_public_key_pem,
    health,
    metrics,
    public_key_pem,
    public_keys_jwks,
)

# A database that cannot be reached answers 503, not 500 (common/views.py).
handler500 = "common.views.server_error"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the admin's language menu
    path("api/v1/", include("subscriptions.urls")),
    path("api/v1/", include("deliveries.urls")),
    path("api/v1/", include("events.urls")),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^api/", api_not_found),
    path("health/", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("demo/receiver/", demo_receiver, name="demo-receiver"),
    path(".well-known/webhooks/public-key.pem", public_key_pem, name="webhooks-public-key"),
    path(".well-known/webhooks/jwks.json", public_keys_jwks, name="webhooks-jwks"),
    path(
        ".well-known/webhooks/ecdsa-public-key.pem",
        ecdsa_public_key_pem,
        name="webhooks-ecdsa-public-key",
    ),
]
