from django.contrib import admin

from .models import Subscription


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["name", "school", "url", "content_type", "is_active", "updated_at"]
    list_filter = ["is_active", "content_type"]
    list_select_related = ["school"]
    search_fields = ["name", "url", "school__name"]
    readonly_fields = ["disabled_at", "created_at", "updated_at"]
