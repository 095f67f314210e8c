from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from deliveries.views import demo_receiver, public_key_pem, public_keys_jwks

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("demo/receiver/", demo_receiver, name="demo-receiver"),
    path(".well-known/webhooks/public-key.pem", public_key_pem, name="webhooks-public-key"),
    path(".well-known/webhooks/jwks.json", public_keys_jwks, name="webhooks-jwks"),
]
