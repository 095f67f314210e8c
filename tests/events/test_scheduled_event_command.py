"""manage.py scheduled_event, and cancelling from the admin."""

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from events.models import ScheduledEvent, ScheduledEventStatus

pytestmark = pytest.mark.django_db

DATA = json.dumps({"course": {"id": "course-4711", "name": "Mathematics 101"}})


def _run(*args):
    out = StringIO()
    call_command("scheduled_event", *args, stdout=out)
    return out.getvalue()


def _create(school, at="2026-03-26T09:00", key="course-4711-start"):
    return _run(
        "create",
        "--school",
        school.slug,
        "--type",
        "course.started",
        "--at",
        at,
        "--data",
        DATA,
        "--key",
        key,
    )


def test_a_time_without_offset_is_the_schools_local_time(school):
    output = _create(school)

    row = ScheduledEvent.objects.get(key="course-4711-start")
    assert row.due_at == dt.datetime(2026, 3, 26, 8, 0, tzinfo=dt.UTC)  # Paris is UTC+1 in March
    assert row.data == {"course": {"id": "course-4711", "name": "Mathematics 101"}}
    assert output == (
        f"{row.pk} course.started at 2026-03-26T09:00:00+01:00 scheduled key=course-4711-start\n"
    )


def test_a_time_with_an_offset_is_taken_as_given(school):
    _create(school, at="2026-03-26T09:00:00Z")

    assert ScheduledEvent.objects.get().due_at == dt.datetime(2026, 3, 26, 9, 0, tzinfo=dt.UTC)


def test_an_event_is_moved_then_cancelled_by_its_key_and_listed(school):
    _create(school)

    moved = _run(
        "move", "--school", school.slug, "--key", "course-4711-start", "--at", "2026-03-26T10:30"
    )
    listed = _run("list", "--school", school.slug)
    cancelled = _run("cancel", "--school", school.slug, "--key", "course-4711-start")

    row = ScheduledEvent.objects.get()
    assert row.due_at == dt.datetime(2026, 3, 26, 9, 30, tzinfo=dt.UTC)
    assert row.status == ScheduledEventStatus.CANCELLED
    line = f"{row.pk} course.started at 2026-03-26T10:30:00+01:00"
    assert moved == listed == f"{line} scheduled key=course-4711-start\n"
    assert cancelled == f"{line} cancelled key=course-4711-start\n"
    assert _run("list", "--school", school.slug, "--status", "scheduled") == ""


@pytest.mark.parametrize(
    ("at", "message"),
    [
        (
            "2026-03-29T02:30",
            "2026-03-29T02:30 does not exist in Europe/Paris: the clocks skip it that day.",
        ),
        (
            "2026-10-25T02:30",
            "2026-10-25T02:30 happens twice in Europe/Paris (the clocks go back that day): give "
            "the UTC offset, e.g. +02:00 for the first, +01:00 for the second.",
        ),
        ("tomorrow", "--at 'tomorrow' is not an ISO-8601 date and time (e.g. 2026-03-26T09:00)."),
    ],
)
def test_a_local_time_that_is_not_one_instant_is_refused(school, at, message):
    with pytest.raises(CommandError) as raised:
        _create(school, at=at)

    assert str(raised.value) == message
    assert ScheduledEvent.objects.count() == 0


def test_invalid_data_and_unknown_targets_are_reported(school):
    with pytest.raises(CommandError) as invalid:
        _run(
            "create",
            "--school",
            school.slug,
            "--type",
            "course.started",
            "--at",
            "2026-03-26T09:00",
            "--data",
            '{"course": {}}',
        )
    with pytest.raises(CommandError) as unknown_key:
        _run("cancel", "--school", school.slug, "--key", "nope")
    with pytest.raises(CommandError) as unknown_school:
        _run("list", "--school", "nowhere")

    assert str(invalid.value) == "data: data.course.id: 'id' is a required property"
    assert str(unknown_key.value) == "lycee-victor-hugo has no scheduled event with the key 'nope'."
    assert str(unknown_school.value) == "No school with the slug 'nowhere'."
    assert ScheduledEvent.objects.count() == 0


def test_support_staff_cancel_scheduled_events_from_the_admin(admin_client, school):
    _create(school)
    _create(school, key="course-4711-end")
    row = ScheduledEvent.objects.get(key="course-4711-start")

    response = admin_client.post(
        "/admin/events/scheduledevent/",
        {"action": "cancel", "_selected_action": [str(row.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["1 cancelled."]
    assert ScheduledEvent.objects.get(pk=row.pk).status == ScheduledEventStatus.CANCELLED
    assert ScheduledEvent.objects.get(key="course-4711-end").status == "scheduled"


def test_a_data_file_that_cannot_be_read_is_reported(school, tmp_path):
    """A wrong path, a folder or a file that is not UTF-8 text: one line, no traceback."""
    binary = tmp_path / "data.bin"
    binary.write_bytes(b'{"course": "\xd0\xff"}')
    cases = {
        tmp_path / "missing.json": "No such file or directory",
        tmp_path: "Is a directory",
        binary: "is not UTF-8 text",
    }
    for path, reason in cases.items():
        with pytest.raises(CommandError) as refused:
            _run(
                "create",
                "--school",
                school.slug,
                "--type",
                "course.started",
                "--at",
                "2026-03-26T09:00",
                "--data-file",
                str(path),
            )
        assert str(refused.value).startswith(f"--data-file {str(path)!r} cannot be read: ")
        assert reason in str(refused.value)
    assert ScheduledEvent.objects.count() == 0
