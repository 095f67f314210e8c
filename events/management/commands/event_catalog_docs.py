"""Write docs/events.md, the receiver-facing event reference, from the shipped catalog."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from events.catalog import EVENT_TYPES
from events.reference import reference_markdown
from webhook_engine.vendors import SEED_EVENT_NAMES

DEFAULT_OUTPUT = Path(settings.BASE_DIR) / "docs" / "events.md"


class Command(BaseCommand):
    help = "Write the event reference (docs/events.md) from the event catalog."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; fail if the file differs from what the catalog gives.",
        )
        parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Where to write.")

    def handle(self, *args: object, **options: object) -> None:
        output = Path(str(options["output"]))
        text = reference_markdown(EVENT_TYPES, SEED_EVENT_NAMES)
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if options["check"]:
            if current != text:
                raise CommandError(
                    f"{output} is not up to date with the event catalog: run "
                    "`python manage.py event_catalog_docs` and commit the result."
                )
            self.stdout.write(f"{output} is up to date.")
            return
        if current == text:
            self.stdout.write(f"{output} is up to date.")
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        self.stdout.write(f"Wrote {output} ({len(EVENT_TYPES)} event types).")
