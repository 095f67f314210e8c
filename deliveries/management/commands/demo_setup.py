"""Demo data for ``make run``: a school, an admin login, webhooks (one of them speaking as
Edusign) and a few published events."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from events.models import EventType
from events.services import event_publish
from schools.models import School
from subscriptions.models import Subscription
from subscriptions.services import subscription_create, subscription_update
from webhook_engine.bodies import PRESETS

DEMO_EVENTS = ["course.created", "student.created", "student.signed"]


class Command(BaseCommand):
    help = "Create (or refresh) the demo school, admin user and webhooks, and publish demo events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where this server is reachable."
        )
        parser.add_argument("--no-events", action="store_true", help="Publish no demo events.")

    def handle(self, *args: object, **options: object) -> None:
        base_url = str(options["base_url"]).rstrip("/")
        username, password = self._admin()
        with transaction.atomic():
            school, _ = School.objects.get_or_create(
                slug="demo",
                defaults={"name": "Demo School", "timezone": "Europe/Paris", "language": "en"},
            )
            self._subscription(school, "Demo receiver", f"{base_url}/demo/receiver/", topics=["*"])
            self._subscription(
                school,
                "Demo receiver (XML, BrainCert body)",
                f"{base_url}/demo/receiver/",
                topics=["course.*"],
                content_type="xml",
                body_template=PRESETS["braincert"]["xml"],
                # Also signed with Ed25519 (v1a) where a key is configured: always in
                # development, in production only with WEBHOOKS_ED25519_KEYS.
                sign_ed25519=bool(settings.WEBHOOKS_ED25519_KEYS),
            )
            # Speaks as Edusign: Edusign's body, headers and x-edusign-hmac.
            self._subscription(
                school,
                "Demo receiver (Edusign profile)",
                f"{base_url}/demo/receiver/",
                topics=["course.*", "student.*"],
                profile="edusign",
            )
            # Nothing listens on port 9: shows failed attempts and retries in the delivery log.
            self._subscription(
                school, "Unreachable endpoint", "http://127.0.0.1:9/webhooks", topics=["course.*"]
            )
            published = 0
            if not options["no_events"]:
                for event_type in EventType.objects.filter(key__in=DEMO_EVENTS):
                    event_publish(
                        school=school, type=event_type.key, data=event_type.sample_payload
                    )
                    published += 1
        self.stdout.write(f"Demo school {school.name!r}: {published} events published.")
        self.stdout.write(f"Log in at {base_url}/admin/ as {username} / {password}")

    def _admin(self) -> tuple[str, str]:
        """The demo superuser; its password is generated once and kept in the data folder."""
        username = "admin"
        password_file = Path(settings.WEBHOOKS_DATA_DIR) / "demo-admin-password"
        password_file.parent.mkdir(parents=True, exist_ok=True)
        if password_file.exists():
            password = password_file.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            password_file.write_text(password)
            password_file.chmod(0o600)
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user_model.objects.create_superuser(username, "admin@demo.invalid", password)
        elif not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return username, password

    def _subscription(
        self, school: School, name: str, url: str, topics: list[str], **options: Any
    ) -> None:
        existing = Subscription.objects.filter(school=school, name=name).first()
        if existing is None:
            subscription_create(school=school, name=name, url=url, topics=topics, **options)
        elif existing.url != url:
            subscription_update(subscription=existing, url=url)
