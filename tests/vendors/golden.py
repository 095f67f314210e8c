"""Comparing what a vendor profile sends with the vendor's own samples
(tests/fixtures/vendor_samples).

Written from the fixtures' README, not from the product: a sample's ``paths`` map every JSON path
(array items as ``[]``) to its JSON type. A profile's body passes when it has exactly the same
paths with the same types (integer and number are both JSON numbers) and the same values,
except where the seed shows a placeholder:

- an e-mail the published page hid (``[email protected]``): any e-mail;
- ``a/b/c``, the documents' way of listing the values a field takes: one of them;
- the paths a test names, each with its reason (ids we assign, the seed's placeholders).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus
from deliveries.services.fan_out import delivery_build
from events.models import Event
from events.services import event_publish
from tests.subscriptions.factories import SubscriptionFactory

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_samples"


def vendor_samples(vendor: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{vendor}.json").read_text(encoding="utf-8"))


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def paths(value: Any, prefix: str = "") -> dict[str, str]:
    """Every path of a JSON value with its type, as the fixtures write them (``a|b`` when the
    items of a list disagree)."""
    found: dict[str, set[str]] = {}
    _paths(value, prefix, found)
    return {path: "|".join(sorted(kinds)) for path, kinds in found.items()}


def _paths(value: Any, prefix: str, found: dict[str, set[str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found.setdefault(path, set()).add(json_type(item))
            _paths(item, path, found)
    elif isinstance(value, list):
        for item in value:
            found.setdefault(f"{prefix}[]", set()).add(json_type(item))
            _paths(item, f"{prefix}[]", found)


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every scalar of a JSON value by its exact path (``items[1].name``)."""
    found: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(leaves(item, f"{prefix}.{key}" if prefix else key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.update(leaves(item, f"{prefix}[{index}]"))
    else:
        found[prefix] = value
    return found


def _same_type(expected: str, got: str) -> bool:
    numbers = {"integer", "number"}
    kinds = set(expected.split("|")), set(got.split("|"))
    return kinds[0] == kinds[1] or (kinds[0] | kinds[1]) <= numbers


def shape_differences(
    body: Any,
    sample: Any,
    *,
    placeholders: Iterable[str] = (),
    allowed_types: Mapping[str, set[str]] | None = None,
) -> list[str]:
    """What differs between a body and a vendor's sample (an empty list when nothing does)."""
    allowed_types = allowed_types or {}
    expected, got = paths(sample), paths(body)
    problems = [f"missing {path} ({kind})" for path, kind in expected.items() if path not in got]
    problems += [f"extra {path} ({kind})" for path, kind in got.items() if path not in expected]
    for path, kind in expected.items():
        if path in got and not (
            _same_type(kind, got[path]) or got[path] in allowed_types.get(path, set())
        ):
            problems.append(f"{path} is {got[path]}, the sample has {kind}")
    skipped = set(placeholders)
    ours = leaves(body)
    for path, value in leaves(sample).items():
        generic = re.sub(r"\[\d+\]", "[]", path)
        if generic in skipped or path not in ours:
            continue
        mine = ours[path]
        if isinstance(value, str) and "[email" in value:
            if not (isinstance(mine, str) and "@" in mine):
                problems.append(f"{path} is {mine!r}, not an e-mail address")
        elif isinstance(value, str) and "/" in value and not value.startswith(("/", "http")):
            options = [option.strip().lower() for option in value.split("/")]
            if str(mine).lower() not in options and not (mine is None and "null" in options):
                problems.append(f"{path} is {mine!r}, not one of {value!r}")
        elif mine != value:
            problems.append(f"{path} is {mine!r}, the sample has {value!r}")
    return problems


def vendor_delivery(
    school, *, profile: str, event_type: str, data: dict, occurred_at: str, **subscription
) -> Delivery:
    """Publish the event with ``data`` (checked against the catalog's schema) and build and
    store its delivery to a new webhook with ``profile``, as fan-out does: in one transaction
    that marks the event fanned out, so a worker running alongside leaves it alone."""
    with transaction.atomic():
        event = event_publish(
            school=school,
            type=event_type,
            data=data,
            occurred_at=dt.datetime.fromisoformat(occurred_at),
        )
        webhook = SubscriptionFactory(school=school, profile=profile, **subscription)
        delivery = delivery_build(event=event, subscription=webhook, now=event.occurred_at)
        assert delivery.status == DeliveryStatus.PENDING, delivery.last_error
        delivery.save(force_insert=True)
        Event.objects.filter(pk=event.pk).update(fanned_out_at=timezone.now())
    return delivery


def vendor_body(school, **delivery: Any) -> tuple[Any, bytes]:
    """``vendor_delivery``'s body, parsed (JSON; ``None`` for XML) and as bytes."""
    built = vendor_delivery(school, **delivery)
    raw = bytes(built.body)
    return (json.loads(raw) if built.content_type == "application/json" else None), raw
