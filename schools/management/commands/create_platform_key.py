from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import validation_message
from schools.services import platform_key_create


class Command(BaseCommand):
    help = (
        "Create a key for the platform's own services (publishes events for any school); the "
        "key alone is printed on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="Platform", help="What uses the key.")

    def handle(self, *args: object, **options: str) -> None:
        try:
            platform_key, key = platform_key_create(name=options["name"])
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from exc
        self.stderr.write(f"Platform key {platform_key.name!r}; it is shown only now:")
        self.stdout.write(key)
