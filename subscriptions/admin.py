from django import forms
from django.contrib import admin

from .models import Subscription
from .services import subscription_save, subscription_topics_errors


class SubscriptionForm(forms.ModelForm):
    # A URL typed without a scheme means https.
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https")

    class Meta:
        model = Subscription
        fields = ["school", "name", "url", "topics", "content_type", "is_active"]

    def clean_topics(self):
        topics = self.cleaned_data["topics"]
        errors = subscription_topics_errors(topics)
        if errors:
            raise forms.ValidationError(errors)
        return topics


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["name", "school", "url", "content_type", "is_active", "updated_at"]
    list_filter = ["is_active", "content_type"]
    list_select_related = ["school"]
    search_fields = ["name", "url", "school__name"]
    readonly_fields = ["disabled_reason", "disabled_at", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        subscription_save(subscription=obj)
