"""The messages a test sent, read back from the real Redis broker, by priority."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator

import redis
from celery import current_app
from django.conf import settings

# kombu's Redis transport keeps a list per priority step: the queue's own name for 0, the name
# and the separator and the step for the others (``kombu.transport.redis``).
_STEPS = (0, 3, 6, 9)
_SEPARATOR = "\x06\x16"


class Queue:
    """A queue of the test's own, which no worker reads."""

    def __init__(self, kind: str = "messages") -> None:
        self.name = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{kind}-{uuid.uuid4().hex[:6]}"
        self.client = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def _key(self, step: int) -> str:
        return self.name if step == 0 else f"{self.name}{_SEPARATOR}{step}"

    def deliveries(self) -> dict[int, list[str]]:
        """The delivery ids of each priority step's ``deliveries.deliver`` messages, in the
        order they were sent; steps without any are left out."""
        found: dict[int, list[str]] = {}
        for step in _STEPS:
            # LPUSH on sending, RPOP on taking: the oldest message is the last in the list.
            for raw in reversed(self.client.lrange(self._key(step), 0, -1)):
                message = json.loads(raw)
                if message["headers"]["task"] != "deliveries.deliver":
                    continue
                args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                found.setdefault(step, []).extend(args[0])
        return found

    def tasks(self) -> list[str]:
        """The names of the tasks of every message in the queue, oldest first."""
        return [
            json.loads(raw)["headers"]["task"]
            for step in _STEPS
            for raw in reversed(self.client.lrange(self._key(step), 0, -1))
        ]

    def delete(self) -> None:
        """Its lists, and the routing kombu stored when the first message was sent to it."""
        bindings = (f"_kombu.binding.{self.name}", f"_kombu.binding_permanent.{self.name}")
        self.client.delete(*(self._key(step) for step in _STEPS), *bindings)


@contextlib.contextmanager
def sending_to(name: str) -> Iterator[None]:
    """Every task sent meanwhile goes to the queue ``name`` (the default queue's name again
    after)."""
    previous = current_app.conf.task_default_queue
    current_app.conf.task_default_queue = name
    try:
        yield
    finally:
        current_app.conf.task_default_queue = previous
