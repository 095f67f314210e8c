from django.contrib import admin
from django.utils.html import format_html

from .models import Delivery, DeliveryAttempt


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = [
        "number",
        "trigger",
        "started_at",
        "duration_ms",
        "response_status",
        "error_kind",
        "error_message",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "status",
        "event_type",
        "subscription",
        "school",
        "attempts",
        "last_response_status",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "is_test", "last_error_kind"]
    list_select_related = ["subscription", "school"]
    search_fields = ["=id", "=event__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [DeliveryAttemptInline]
    exclude = ["body"]
    readonly_fields = [
        "id",
        "school",
        "event",
        "subscription",
        "event_type",
        "is_test",
        "content_type",
        "body_text",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
        "enqueued_at",
        "leased_until",
        "last_attempt_at",
        "last_response_status",
        "last_error_kind",
        "last_error",
        "delivered_at",
    ]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            queryset = queryset.defer("body")
        return queryset

    @admin.display(description="Body")
    def body_text(self, obj):
        return format_html("<pre>{}</pre>", bytes(obj.body).decode("utf-8", errors="replace"))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = [
        "delivery",
        "number",
        "trigger",
        "started_at",
        "duration_ms",
        "response_status",
        "error_kind",
    ]
    list_filter = ["trigger", "error_kind"]
    list_select_related = ["delivery"]
    search_fields = ["=delivery__id"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
