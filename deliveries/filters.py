"""Filters of the delivery list (API)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from common.filters import DateTimeFilter, StrictFilterSet
from events.search import PAYLOAD_SEARCH_MAX_LENGTH
from schools.permissions import client_school

from .models import Delivery, DeliveryStatus
from .selectors import deliveries_payload_q


class DeliveryFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    subscription = django_filters.UUIDFilter(field_name="subscription_id")
    event = django_filters.UUIDFilter(field_name="event_id")
    event_type = django_filters.CharFilter()
    is_test = django_filters.BooleanFilter()
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")
    payload = django_filters.CharFilter(
        method="payload_filter",
        max_length=PAYLOAD_SEARCH_MAX_LENGTH,
        help_text=(
            "Deliveries whose event data mentions this: whole words or values of any text or "
            'number field (c-42, 4711), "a phrase" in quotes; case is ignored.'
        ),
    )

    class Meta:
        model = Delivery
        fields = ["status", "subscription", "event", "event_type", "is_test"]

    def payload_filter(self, queryset: QuerySet[Delivery], name: str, value: str) -> Any:
        school = client_school(self.request)
        return queryset.filter(deliveries_payload_q(term=value, school_ids=[school.pk]))
