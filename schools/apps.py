from django.apps import AppConfig


class SchoolsConfig(AppConfig):
    name = "schools"
    verbose_name = "Schools"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401
