"""The embedded broker of `make run` (webhooks_project/fsbroker.py)."""

import shutil
from queue import Empty

import pytest
from kombu import Connection

from webhooks_project import celery  # noqa: F401  (registers the webhooksfs transport)


def test_a_queue_folder_deleted_under_a_consumer_reads_as_empty(tmp_path):
    """`rm -rf var` while `make run` runs: the worker polling the folder finds no message, not
    a FileNotFoundError that stops it with its traceback."""
    folder = tmp_path / "broker"
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
    }
    with Connection("webhooksfs://localhost//", transport_options=options) as connection:
        channel = connection.default_channel
        channel._put("webhooks", {"body": "a message"})
        assert channel._get("webhooks") == {"body": "a message"}

        shutil.rmtree(folder)

        with pytest.raises(Empty):
            channel._get("webhooks")
