from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from deliveries.views import demo_receiver

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("demo/receiver/", demo_receiver, name="demo-receiver"),
]
