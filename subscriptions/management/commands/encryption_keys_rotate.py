from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from subscriptions.crypto import SecretUnreadable
from subscriptions.services import secrets_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of WEBHOOKS_ENCRYPTION_KEYS. "
        "Rotate a key by adding the new one last, then putting it first, running this, then "
        "removing the old one, restarting every process after each change of the list."
    )

    def handle(self, *args: object, **options: object) -> None:
        try:
            count = secrets_reencrypt()
        except (SecretUnreadable, ImproperlyConfigured) as exc:
            # ImproperlyConfigured: a key that is not a Fernet key, the operator's to correct.
            raise CommandError(f"{exc} Nothing was changed.") from exc
        self.stdout.write(f"Re-encrypted {count} secrets with the first key.")
