from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from .models import Subscription
from .services import (
    subscription_enable,
    subscription_save,
    subscription_topics_errors,
    subscription_validate,
)


class SubscriptionForm(forms.ModelForm):
    # A URL typed without a scheme means https.
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https")
    basic_auth_password = forms.CharField(
        label="Basic-authentication password",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current password.",
    )

    class Meta:
        model = Subscription
        fields = [
            "school",
            "name",
            "url",
            "topics",
            "content_type",
            "basic_auth_enabled",
            "basic_auth_username",
            "custom_headers",
            "body_template",
            "sign_ed25519",
            "is_active",
        ]

    def clean_topics(self):
        topics = self.cleaned_data["topics"]
        errors = subscription_topics_errors(topics)
        if errors:
            raise forms.ValidationError(errors)
        return topics

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        # The same checks subscription_save makes (destination, headers, body, ...), shown here.
        try:
            subscription_validate(
                self.instance,
                password_given=bool(self.cleaned_data.get("basic_auth_password")),
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["name", "school", "url", "content_type", "is_active", "updated_at"]
    list_filter = ["is_active", "content_type"]
    list_select_related = ["school"]
    search_fields = ["name", "url", "school__name"]
    readonly_fields = [
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "created_at",
        "updated_at",
    ]

    actions = ["enable_selected"]

    @admin.action(description="Re-enable the selected webhooks", permissions=["change"])
    def enable_selected(self, request, queryset):
        for subscription in queryset:
            subscription_enable(subscription=subscription)
        self.message_user(request, f"{queryset.count()} webhooks re-enabled.")

    def save_model(self, request, obj, form, change):
        subscription_save(
            subscription=obj, basic_auth_password=form.cleaned_data.get("basic_auth_password")
        )
