import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from common.errors import validation_message
from events.services import event_publish
from schools.models import School


class Command(BaseCommand):
    help = "Publish an event for a school (as the platform would)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--school", required=True, help="The school's slug.")
        parser.add_argument("--type", required=True, help="An event type, e.g. course.created.")
        parser.add_argument("--data", default="{}", help="The event's data as a JSON object.")
        parser.add_argument("--occurred-at", help="ISO-8601 with a time zone (default: now).")
        parser.add_argument("--idempotency-key")

    def handle(self, *args: object, **options: str) -> None:
        school = School.objects.filter(slug=options["school"]).first()
        if school is None:
            raise CommandError(f"No school with the slug {options['school']!r}.")
        try:
            data = json.loads(options["data"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--data is not JSON: {exc}") from exc
        occurred_at = None
        if options["occurred_at"]:
            occurred_at = parse_datetime(options["occurred_at"])
            if occurred_at is None:
                raise CommandError("--occurred-at is not an ISO-8601 datetime.")
        try:
            event = event_publish(
                school=school,
                type=options["type"],
                data=data,
                occurred_at=occurred_at,
                idempotency_key=options["idempotency_key"],
            )
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from exc
        self.stdout.write(str(event.id))
