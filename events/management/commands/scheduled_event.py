"""Schedule, move, cancel and list a school's scheduled events from the command line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from events.models import ScheduledEvent, ScheduledEventStatus
from events.schedule import WallClock, wall_clock_kind
from events.selectors import scheduled_event_get, scheduled_events_for_school
from events.services import scheduled_event_cancel, scheduled_event_create, scheduled_event_move
from schools.models import School


def _when(value: str, school: School) -> dt.datetime:
    """An ISO-8601 date and time; without a UTC offset it is the school's local time."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as error:
        raise CommandError(
            f"--at {value!r} is not an ISO-8601 date and time (e.g. 2026-03-26T09:00)."
        ) from error
    if when.tzinfo is not None:
        return when
    tz = school.tzinfo
    kind = wall_clock_kind(when, tz)
    if kind is WallClock.SKIPPED:
        raise CommandError(
            f"{value} does not exist in {school.timezone}: the clocks skip it that day."
        )
    if kind is WallClock.REPEATED:
        raise CommandError(
            f"{value} happens twice in {school.timezone} (the clocks go back that day): "
            "give the UTC offset, e.g. +02:00 for the first, +01:00 for the second."
        )
    return when.replace(tzinfo=tz)


class Command(BaseCommand):
    help = (
        "Schedule an event to be published at a given time (a course's start or end), move or "
        "cancel it before it fires, or list a school's scheduled events."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name: str, help: str) -> CommandParser:
            sub = actions.add_parser(name, help=help)
            sub.add_argument("--school", required=True, help="The school's slug.")
            return sub

        create = action("create", "Schedule an event.")
        create.add_argument("--type", required=True, help="The event type, e.g. course.started.")
        create.add_argument("--at", required=True, help="When; ISO-8601, local if no offset.")
        self._data_arguments(create)
        create.add_argument("--key", help="Your name for it, to move or cancel it later.")

        move = action("move", "Move a scheduled event to another time.")
        self._target_arguments(move)
        move.add_argument("--at", required=True, help="The new time; local if no offset.")
        self._data_arguments(move)

        cancel = action("cancel", "Cancel a scheduled event.")
        self._target_arguments(cancel)

        listing = action("list", "List the school's scheduled events.")
        listing.add_argument("--status", choices=ScheduledEventStatus.values)

    def _target_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--key", help="The key it was scheduled with.")
        target.add_argument("--id", help="Its id.")

    def _data_arguments(self, parser: CommandParser) -> None:
        data = parser.add_mutually_exclusive_group()
        data.add_argument("--data", help="The event data as a JSON object.")
        data.add_argument("--data-file", type=Path, help="A file holding the JSON data.")

    def handle(self, *args: Any, **options: Any) -> None:
        school = School.objects.filter(slug=options["school"]).first()
        if school is None:
            raise CommandError(f"No school with the slug {options['school']!r}.")
        try:
            if options["action"] == "list":
                for row in scheduled_events_for_school(school=school, status=options["status"]):
                    self._show(row)
                return
            if options["action"] == "create":
                row = scheduled_event_create(
                    school=school,
                    type=options["type"],
                    data=self._data(options) or {},
                    due_at=_when(options["at"], school),
                    key=options["key"],
                )
            else:
                row = self._target(school, options)
                if options["action"] == "move":
                    row = scheduled_event_move(
                        scheduled_event=row,
                        due_at=_when(options["at"], school),
                        data=self._data(options),
                    )
                else:
                    row = scheduled_event_cancel(scheduled_event=row)
        except ValidationError as error:
            raise CommandError(
                "; ".join(
                    f"{field}: {' '.join(messages)}"
                    for field, messages in error.message_dict.items()
                )
            ) from error
        self._show(row)

    def _target(self, school: School, options: dict[str, Any]) -> ScheduledEvent:
        try:
            return scheduled_event_get(
                school=school, key=options["key"], scheduled_event_id=options["id"]
            )
        except (ScheduledEvent.DoesNotExist, ValidationError) as error:
            what = f"key {options['key']!r}" if options["key"] else f"id {options['id']!r}"
            raise CommandError(f"{school.slug} has no scheduled event with the {what}.") from error

    def _data(self, options: dict[str, Any]) -> Any:
        raw = options["data"]
        if options["data_file"] is not None:
            path = options["data_file"]
            try:
                raw = path.read_text(encoding="utf-8")
            except OSError as error:
                reason = error.strerror or str(error)
                raise CommandError(
                    f"--data-file {str(path)!r} cannot be read: {reason}."
                ) from error
            except UnicodeDecodeError as error:
                raise CommandError(
                    f"--data-file {str(path)!r} cannot be read: it is not UTF-8 text ({error})."
                ) from error
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as error:
            raise CommandError(f"The data is not JSON: {error}.") from error

    def _show(self, row: ScheduledEvent) -> None:
        local = row.due_at.astimezone(row.school.tzinfo).isoformat()
        key = f" key={row.key}" if row.key else ""
        self.stdout.write(f"{row.pk} {row.type_id} at {local} {row.status}{key}")
