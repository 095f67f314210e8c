"""Filters of the delivery list (API)."""

from __future__ import annotations

import django_filters

from common.filters import DateTimeFilter, StrictFilterSet

from .models import Delivery, DeliveryStatus


class DeliveryFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    subscription = django_filters.UUIDFilter(field_name="subscription_id")
    event = django_filters.UUIDFilter(field_name="event_id")
    event_type = django_filters.CharFilter()
    is_test = django_filters.BooleanFilter()
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["status", "subscription", "event", "event_type", "is_test"]
