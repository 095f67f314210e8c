from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import validation_message
from schools.services import school_create


class Command(BaseCommand):
    help = "Create a school."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--timezone", default="UTC", help="IANA zone, e.g. Europe/Paris.")
        parser.add_argument("--language", default="en", help="e.g. en, fr, pt-BR.")

    def handle(self, *args: object, **options: str) -> None:
        try:
            school = school_create(
                slug=options["slug"],
                name=options["name"],
                timezone_name=options["timezone"],
                language=options["language"],
            )
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from exc
        self.stdout.write(f"Created school {school.name} ({school.slug}, {school.timezone}).")
