import datetime as dt
import json
from zoneinfo import ZoneInfo

from deliveries.payloads import datetimes_localize, envelope_build, render

PARIS = ZoneInfo("Europe/Paris")


def test_envelope_has_the_documented_shape_in_the_schools_zone():
    envelope = envelope_build(
        event_id="7c3e",
        event_type="course.created",
        school_id=3,
        school_slug="lycee",
        occurred_at=dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC),
        data={"course": {"id": "c1"}},
        tz=PARIS,
    )

    assert envelope == {
        "id": "7c3e",
        "type": "course.created",
        "school": {"id": 3, "slug": "lycee"},
        "timestamp": "2026-07-01T10:00:00+02:00",
        "data": {"course": {"id": "c1"}},
    }


def test_datetimes_inside_data_follow_daylight_saving_time():
    # Paris moves from +01:00 to +02:00 at 01:00 UTC on 2026-03-29.
    data = {
        "before": "2026-03-29T00:30:00+00:00",
        "after": "2026-03-29T02:30:00Z",
        "nested": [{"start": "2026-10-25T00:30:00+00:00"}],
        "not_a_datetime": "2026-03-29",
        "naive": "2026-03-29T00:30:00",
    }

    localized = datetimes_localize(data, PARIS)

    assert localized == {
        "before": "2026-03-29T01:30:00+01:00",
        "after": "2026-03-29T04:30:00+02:00",
        "nested": [{"start": "2026-10-25T02:30:00+02:00"}],
        "not_a_datetime": "2026-03-29",
        "naive": "2026-03-29T00:30:00",
    }


def test_json_rendering_is_compact_utf8():
    body, content_type = render({"name": "Élève", "n": 1}, "json")

    assert content_type == "application/json"
    assert body == '{"name":"Élève","n":1}'.encode()
    assert json.loads(body) == {"name": "Élève", "n": 1}
