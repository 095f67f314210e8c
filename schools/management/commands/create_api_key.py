from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import validation_message
from schools.models import School
from schools.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a school; the key alone is printed on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--school", required=True, help="The school's slug.")
        parser.add_argument("--name", default="API key", help="What uses the key.")

    def handle(self, *args: object, **options: str) -> None:
        school = School.objects.filter(slug=options["school"]).first()
        if school is None:
            raise CommandError(f"No school with the slug {options['school']!r}.")
        try:
            api_key, key = api_key_create(school=school, name=options["name"])
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from exc
        self.stderr.write(f"API key {api_key.name!r} for {school.name}; it is shown only now:")
        self.stdout.write(key)
