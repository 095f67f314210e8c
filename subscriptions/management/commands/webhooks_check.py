from django.core.management.base import BaseCommand, CommandError
from django.utils import translation

from subscriptions.services import subscriptions_refused


class Command(BaseCommand):
    help = (
        "List every stored webhook that the current checks refuse (settings an earlier release "
        "accepted), with its school and the reason, and exit with status 1 when there is any. "
        "Changes nothing. Run it after migrate; correct each webhook listed on its page."
    )

    def handle(self, *args: object, **options: object) -> None:
        with translation.override("en"):  # operators' output, like the log
            refused = subscriptions_refused()
        for subscription, errors in refused:
            state = "" if subscription.is_active else " (disabled)"
            self.stdout.write(
                f"{subscription.school.slug}: webhook {subscription.name!r} "
                f"({subscription.pk}){state}"
            )
            for field, messages in errors.items():
                for message in messages:
                    self.stdout.write(f"  {field}: {message}")
        if refused:
            raise CommandError(
                f"{len(refused)} webhook(s) have settings the current checks refuse: correct "
                "them on their pages (admin or API) before they are next saved."
            )
        self.stdout.write("Every stored webhook passes the current checks.")
