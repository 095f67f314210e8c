"""The deliveries chart of the home page and of a webhook's page, drawn on the server as SVG
(no chart library, nothing from a CDN): stacked bars per hour over 24 hours and per day over
7 days, delivered / pending / retrying / failed, with a table of the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _

from .display import STATUS_COLOURS
from .models import DeliveryState
from .selectors import Bucket, Timeline

WIDTH = 720
HEIGHT = 160
TOP = 10
BOTTOM = 22  # room for the labels under the bars
LEFT = 36  # room for the scale
STATES = (
    DeliveryState.DELIVERED,
    DeliveryState.PENDING,
    DeliveryState.RETRYING,
    DeliveryState.FAILED,
)


@dataclass(frozen=True)
class Segment:
    y: float
    height: float
    colour: str


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    segments: list[Segment]
    label: str  # under the bar, or empty
    title: str  # the bar's numbers, shown on hover
    period: str  # the hour or day, for the table of numbers
    bucket: Bucket


@dataclass(frozen=True)
class Chart:
    """One chart: its bars, its scale, its totals by state."""

    caption: str
    bars: list[Bar]
    scale: list[tuple[float, str]]  # (y, label)
    totals: list[tuple[str, str, int, str]]  # (state, label, count, colour)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM

    @property
    def has_failures(self) -> bool:
        return any(state == DeliveryState.FAILED and count for state, _l, count, _c in self.totals)


def _bucket_title(label: str, bucket: Bucket) -> str:
    parts = [
        _("%(label)s: %(value)s")
        % {
            "label": state.label,
            "value": number_format(getattr(bucket, state.value), force_grouping=True),
        }
        for state in STATES
        if getattr(bucket, state.value)
    ]
    return f"{label} — " + (", ".join(parts) if parts else _("nothing sent"))


def _chart(caption: str, buckets: list[Bucket], labels: list[str], titles: list[str]) -> Chart:
    peak = max((bucket.total for bucket in buckets), default=0)
    top = max(peak, 1)
    plot_height = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT) / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        y = HEIGHT - BOTTOM
        segments = []
        for state in STATES:
            count = getattr(bucket, state.value)
            if not count:
                continue
            height = max(count / top * plot_height, 1.5)
            y -= height
            segments.append(
                Segment(y=round(y, 1), height=round(height, 1), colour=STATUS_COLOURS[state])
            )
        bars.append(
            Bar(
                x=round(LEFT + index * step + step * 0.12, 1),
                width=round(step * 0.76, 1),
                segments=segments,
                label=labels[index],
                title=_bucket_title(titles[index], bucket),
                period=titles[index],
                bucket=bucket,
            )
        )
    # 0, the top, and the middle when it is a whole number.
    scale = [
        (round(HEIGHT - BOTTOM - fraction * plot_height, 1), number_format(int(top * fraction)))
        for fraction in (0, 0.5, 1)
        if fraction != 0.5 or top % 2 == 0
    ]
    totals = [
        (
            state.value,
            str(state.label),
            sum(getattr(bucket, state.value) for bucket in buckets),
            STATUS_COLOURS[state],
        )
        for state in STATES
    ]
    return Chart(caption=caption, bars=bars, scale=scale, totals=totals)


def timeline_chart(timeline: Timeline) -> dict[str, Any]:
    """The two charts of a timeline: ``hours`` (last 24 hours) and ``days`` (last 7 days), both
    in ``charts``, and the ``zone`` they are drawn in."""
    hour_labels = [
        date_format(bucket.start, "H:i") if index % 4 == 0 else ""
        for index, bucket in enumerate(timeline.hours)
    ]
    hour_titles = [
        f"{date_format(bucket.start, 'SHORT_DATE_FORMAT')} {date_format(bucket.start, 'H:i')}"
        for bucket in timeline.hours
    ]
    day_labels = [date_format(bucket.start, "D j") for bucket in timeline.days]
    day_titles = [date_format(bucket.start, "l j F") for bucket in timeline.days]
    hours = _chart(
        _("Deliveries per hour, last 24 hours"), timeline.hours, hour_labels, hour_titles
    )
    days = _chart(_("Deliveries per day, last 7 days"), timeline.days, day_labels, day_titles)
    return {
        "hours": hours,
        "days": days,
        "charts": [hours, days],
        "zone": timeline.zone,
        "failed_24h": sum(bucket.failed for bucket in timeline.hours),
    }
