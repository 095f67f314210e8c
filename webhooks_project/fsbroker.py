"""A kombu filesystem transport that never reads half-written messages.

Stock kombu writes a message file in place, so a worker polling the folder can read it before it is
complete, fail to decode it, die and lose the message (kombu #1551). It also moves a claimed file to
the system temp folder, which is a copy and a delete when that folder is on another filesystem, so
two workers can both take the same message. This transport writes each message to a hidden file and
renames it into place, and claims a message by renaming it inside the queue folder: both renames are
atomic, so every message is read whole and by one consumer only.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

_CLAIM_PREFIX = ".claimed-"
_PARTIAL_PREFIX = ".partial-"


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for folder in (self.data_folder_in, self.data_folder_out, str(self.control_folder)):
            Path(folder).mkdir(parents=True, exist_ok=True)

    # kombu's own base classes disagree on this signature (message vs payload).
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000):015d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, _PARTIAL_PREFIX + name)
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to {self.data_folder_out!r}") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        suffix = f".{queue}.msg"
        try:
            names = sorted(os.listdir(self.data_folder_in))
        except FileNotFoundError:
            # The folder was deleted under a running worker (`rm -rf var`): nothing to read.
            # Raised, it would stop the worker with an unrecoverable error and its traceback.
            raise Empty() from None
        for name in names:
            if name.startswith(".") or not name.endswith(suffix):
                continue
            if name.partition(".")[2] != suffix[1:]:
                continue
            source = os.path.join(self.data_folder_in, name)
            claimed = os.path.join(self.data_folder_in, f"{_CLAIM_PREFIX}{os.getpid()}-{name}")
            try:
                os.rename(source, claimed)
            except OSError:
                continue  # another consumer took it first
            try:
                with open(claimed, "rb") as handle:
                    payload = handle.read()
                os.remove(claimed)
                return loads(bytes_to_str(payload))
            except (OSError, ValueError):
                logger.exception("Skipping unreadable broker message %s", claimed)
                continue
        raise Empty()

    def _size(self, queue: str) -> int:
        suffix = f".{queue}.msg"
        return sum(
            1
            for name in os.listdir(self.data_folder_in)
            if not name.startswith(".") and name.partition(".")[2] == suffix[1:]
        )

    def _purge(self, queue: str) -> int:
        suffix = f".{queue}.msg"
        count = 0
        for name in os.listdir(self.data_folder_in):
            if name.startswith(".") or name.partition(".")[2] != suffix[1:]:
                continue
            try:
                os.remove(os.path.join(self.data_folder_in, name))
                count += 1
            except OSError:
                continue
        return count


class Transport(filesystem.Transport):
    Channel = Channel
    global_state = filesystem.Transport.global_state
    driver_type = "filesystem"
    driver_name = "webhooksfs"
