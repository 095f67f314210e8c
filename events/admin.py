from django.contrib import admin

from .models import Event, EventType


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    list_display = ["key", "group", "description", "version", "deprecated"]
    list_filter = ["group", "deprecated"]
    search_fields = ["key", "description"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "school", "occurred_at", "created_at", "fanned_out_at"]
    list_filter = ["type"]
    list_select_related = ["school", "type"]
    search_fields = ["=id", "=idempotency_key"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = [
        "id",
        "school",
        "type",
        "data",
        "occurred_at",
        "created_at",
        "idempotency_key",
        "fanned_out_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
