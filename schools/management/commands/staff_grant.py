from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from common.errors import validation_message
from schools.models import School
from schools.services import school_admin_grant, support_staff_grant


class Command(BaseCommand):
    help = (
        "Let a user into the admin as a school admin (--school, repeatable) or as platform "
        "support staff (--support). Creates the user when missing, without a password: set one "
        "with `manage.py changepassword`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--school", action="append", default=[], help="Slug of a school they administer."
        )
        parser.add_argument("--support", action="store_true", help="Support staff: every school.")
        parser.add_argument("--email", default="", help="For a new user; failure notices go there.")

    def handle(self, *args: object, **options: object) -> None:
        slugs = list(options["school"])  # type: ignore[call-overload]
        if bool(slugs) == bool(options["support"]):
            raise CommandError("Give --school (one or more) or --support.")
        schools = []
        for slug in slugs:
            school = School.objects.filter(slug=slug).first()
            if school is None:
                raise CommandError(f"No school with the slug {slug!r}.")
            schools.append(school)
        user_model = get_user_model()
        username = str(options["username"])
        try:
            # One transaction: a refused grant leaves no new user behind.
            with transaction.atomic():
                user = user_model.objects.filter(username=username).first()
                created = user is None
                if user is None:
                    # Checked as the admin's user form checks them: a name it could not save
                    # again, or an address failure notices could not be sent to, is refused.
                    user = user_model(username=username, email=str(options["email"]))
                    user.set_unusable_password()
                    user.full_clean()
                    user.save()
                if options["support"]:
                    support_staff_grant(user=user)
                    self.stdout.write(f"{user.username} is support staff: sees every school.")
                for school in schools:
                    school_admin_grant(user=user, school=school)
                    self.stdout.write(f"{user.username} administers {school.name}.")
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from exc
        if created:
            self.stdout.write(f"Set a password: python manage.py changepassword {user.username}")
