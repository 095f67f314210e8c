"""The receiver-facing event reference, built from catalog entries. Pure functions, no database.

The same entries give ``docs/events.md`` (``python manage.py event_catalog_docs``, from the
shipped catalog) and the admin's reference page (from the EventType table, which also holds the
types operators added), so the documentation cannot drift from the data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from webhook_engine.envelope import envelope_build
from webhook_engine.vendors import PROFILES, SEED_EVENT_NAMES, SeedEventName, profile_body
from webhook_engine.vendors.mapping import spec_rows

SAMPLE_EVENT_ID = "4f9c2a8e-5b1d-4e0f-9a7c-3d2e1f0a9b8c"
SAMPLE_SCHOOL_ID, SAMPLE_SCHOOL_SLUG = 1, "lycee-victor-hugo"
SAMPLE_ENVELOPE: dict[str, Any] = {
    "id": SAMPLE_EVENT_ID,
    "type": "course.deleted",
    "school": {"id": SAMPLE_SCHOOL_ID, "slug": SAMPLE_SCHOOL_SLUG},
    "timestamp": "2026-03-26T09:00:00+01:00",
    "data": {"course": {"id": "course-4711", "name": "Mathematics 101"}},
}


@dataclass(frozen=True)
class VendorShape:
    """How one vendor profile sends an event type: its name, each field's source, the sample."""

    profile: str
    label: str
    names: str  # the vendor's event name(s), as its documentation has them
    dates: str  # the profile's date format
    rows: tuple[tuple[str, str], ...]  # (vendor path, where its value comes from)
    sample_json: str  # the type's sample as this vendor's receivers get it

    @property
    def names_list(self) -> list[str]:
        return [name for name in self.names.split(", ") if name]


@dataclass(frozen=True)
class ReferenceType:
    key: str
    group: str
    description: str
    version: int
    deprecated: bool
    subtypes: tuple[str, ...]
    sample_json: str
    schema_json: str
    vendors: tuple[VendorShape, ...] = ()


@dataclass(frozen=True)
class ReferenceGroup:
    name: str
    types: tuple[ReferenceType, ...]


def json_pretty(value: Any) -> str:
    """Indented JSON as shown in the reference (non-ASCII kept as is)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def vendor_shapes(key: str, sample: Mapping[str, Any]) -> tuple[VendorShape, ...]:
    """Every vendor profile that sends ``key``: its names for it, its mapping, its sample."""
    envelope = envelope_build(
        event_id=SAMPLE_EVENT_ID,
        event_type=key,
        school_id=SAMPLE_SCHOOL_ID,
        school_slug=SAMPLE_SCHOOL_SLUG,
        occurred_at=dt.datetime(2026, 3, 26, 8, 0, tzinfo=dt.UTC),
        data=dict(sample),
        tz=ZoneInfo("Europe/Paris"),
    )
    shapes = []
    for profile in PROFILES.values():
        if profile.events is None or key not in profile.events:
            continue
        names = []
        for row in SEED_EVENT_NAMES:
            if row.vendor == profile.vendor and row.key == key and row.event not in names:
                names.append(row.event)
        shapes.append(
            VendorShape(
                profile=profile.key,
                label=profile.label,
                names=", ".join(names),
                dates=profile.dates_doc,
                rows=tuple((row.path, row.source) for row in spec_rows(profile.events[key])),
                sample_json=json_pretty(profile_body(profile.key, envelope)),
            )
        )
    return tuple(shapes)


def reference_groups(entries: Iterable[Mapping[str, Any]]) -> list[ReferenceGroup]:
    """The entries by group (groups and keys in alphabetical order)."""
    by_group: dict[str, list[ReferenceType]] = {}
    for entry in entries:
        subtype = (entry["json_schema"] or {}).get("properties", {}).get("subtype", {})
        by_group.setdefault(entry["group"], []).append(
            ReferenceType(
                key=entry["key"],
                group=entry["group"],
                description=entry["description"],
                version=entry["version"],
                deprecated=entry["deprecated"],
                subtypes=tuple(subtype.get("enum", ())),
                sample_json=json_pretty(entry["sample_payload"]),
                schema_json=json_pretty(entry["json_schema"]),
                vendors=vendor_shapes(entry["key"], entry["sample_payload"] or {}),
            )
        )
    return [
        ReferenceGroup(name=name, types=tuple(sorted(types, key=lambda t: t.key)))
        for name, types in sorted(by_group.items())
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _html_names(names: str) -> str:
    return ", ".join(f"<code>{name}</code>" for name in names.split(", ") if name)


def _anchor(key: str) -> str:
    # GitHub's heading ids: lowercase, punctuation other than - and _ dropped.
    return "".join(char for char in key.lower() if char.isalnum() or char in "-_")


INTRO = """\
What each webhook event means, what its `data` looks like, and the JSON Schema the platform checks
that data against before anything is sent.

## The envelope

Every delivery has the same envelope; `data` is the part that depends on the event type:

```json
{envelope}
```

With the `application/xml` content type the same tree comes under a `<webhook>` root. Every
datetime, in the envelope and in `data`, is ISO-8601 in the school's time zone.

## Conventions

- **Keys** are `<resource>.<past_tense_verb>` (`course.created`, `student.signed`). Where two
  platforms name the same thing, it is one key; subscribe to several with wildcards (`course.*`).
- **`data`** has one object per resource involved, named after it (`course`, `student`, `user`),
  each with its `id` (a string or an integer, as the platform has it). Other systems' ids are
  `external_id`. Keys are `snake_case`.
- **Sub-types**: where a platform distinguishes kinds of one event (eduMe's `course.updated` with
  `title.changed`), the kind is the `subtype` field of `data`, listed in the type's schema.
- **Schemas** require what identifies the event and allow additional properties: platforms may
  send more than is listed, so ignore fields you do not know.
- **Version**: a type's version goes up when its `data` changes in a way that breaks receivers.
  A **deprecated** type is still sent; plan to move off it.

## Delivery profiles

A webhook speaks Standard Webhooks (the envelope above; the default) or exactly as one of the
seed platforms does, so a receiver written for it works unchanged: its body, field names, date
format, event names, headers and signature. A vendor profile sends only that vendor's event
types (each type below says which vendors send it, with the vendor's field for each of ours
and the sample as that vendor's receivers get it). Every profile also sends the Standard
Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`) and `X-Webhook-Event`,
`X-Webhook-School`, `X-Webhook-Lang` and `X-Webhook-Attempt`, which vendor receivers ignore.
Receivers' verification code for each profile is in [receivers.md](receivers.md).

{profiles}

Where a vendor field has no source in an event's `data`, it is left out: values are never made
up. BrainCert's `domain_id` and `tenant_id` are `data.domain_id` / `data.tenant_id` when the
platform sends them, else the school's slug and id.

## Scheduled events

`course.started` and `course.ended` are published at the session's start and end, at most a
few seconds late (the platform schedules them, and moves or cancels them when a course is
rescheduled). `cron.midnight` is sent once a day per school: at 00:07 UTC, or at the local time
the school chose in its own time zone; on the days the clocks change, a local time the clocks
skip fires at the moment they jump, and one they show twice fires at its first occurrence.
"""


def reference_markdown(
    entries: Iterable[Mapping[str, Any]], seed_names: Iterable[SeedEventName]
) -> str:
    """The whole reference as Markdown (what ``docs/events.md`` holds)."""
    groups = reference_groups(entries)
    profiles = [
        "| Profile | Body | Dates | Headers | Signature |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {p.label} (`{p.key}`) | {_cell(p.body_doc)} | {_cell(p.dates_doc)} | "
            f"{_cell(p.headers_doc)} | {_cell(p.signature_doc)} |"
            for p in PROFILES.values()
        ),
    ]
    lines = [
        "# Event reference",
        "",
        "<!-- Generated by `python manage.py event_catalog_docs` from events/catalog/; "
        "do not edit by hand. -->",
        "",
        INTRO.format(envelope=json_pretty(SAMPLE_ENVELOPE), profiles="\n".join(profiles)),
        "## Event types",
        "",
        "| Key | Group | Description |",
        "| --- | --- | --- |",
    ]
    for group in groups:
        for item in group.types:
            lines.append(
                f"| [`{item.key}`](#{_anchor(item.key)}) | {group.name} | "
                f"{_cell(item.description)} |"
            )
    for group in groups:
        lines += ["", f"## {group.name}"]
        for item in group.types:
            lines += ["", f"### `{item.key}`", "", item.description, ""]
            facts = [f"Version {item.version}."]
            if item.deprecated:
                facts.append("**Deprecated.**")
            if item.subtypes:
                facts.append(
                    "Sub-types (`subtype`): " + ", ".join(f"`{s}`" for s in item.subtypes) + "."
                )
            lines += [
                " ".join(facts),
                "",
                "Sample `data`:",
                "",
                "```json",
                item.sample_json,
                "```",
                "",
                "<details><summary>JSON Schema of <code>data</code></summary>",
                "",
                "```json",
                item.schema_json,
                "```",
                "",
                "</details>",
            ]
            if item.vendors:
                lines += ["", "Sent by the vendor profiles:"]
            for shape in item.vendors:
                lines += [
                    "",
                    f"<details><summary>{shape.label} (<code>{shape.profile}</code>): "
                    f"{_html_names(shape.names)}</summary>",
                    "",
                    f"| {shape.label} | From |",
                    "| --- | --- |",
                    *(f"| `{path}` | {_cell(source)} |" for path, source in shape.rows),
                    "",
                    f"Dates: {shape.dates}, unless a row says otherwise. The sample, as the "
                    "receiver gets it:",
                    "",
                    "```json",
                    shape.sample_json,
                    "```",
                    "",
                    "</details>",
                ]
    lines += [
        "",
        "## Seed platforms' event names",
        "",
        "Which key each event of Edusign, BrainCert, eduMe and edudip became.",
        "",
        "| Platform | Event | Sub-type | Key | `data.subtype` | Note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in seed_names:
        subtype = f"`{row.subtype}`" if row.subtype else ""
        data_subtype = f"`{row.data_subtype}`" if row.data_subtype else ""
        lines.append(
            f"| {row.vendor} | `{row.event}` | {subtype} | [`{row.key}`](#{_anchor(row.key)}) | "
            f"{data_subtype} | {_cell(row.note)} |"
        )
    return "\n".join(lines) + "\n"
