import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from webhook_engine.envelope import datetime_localize, datetimes_localize, envelope_build
from webhook_engine.inputs import (
    MAX_JSON_DEPTH,
    datetime_problem,
    json_problems,
    query_problems,
    text_problem,
)

KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14
BAKER = dt.timezone(dt.timedelta(hours=-12))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        (
            '{"a": "x\\u0000y"}',
            [("data.a", "data.a contains a NUL character (U+0000), which cannot be stored.")],
        ),
        (
            '{"k\\u0000": 1}',
            [
                (
                    "data",
                    "data has a key that contains a NUL character (U+0000), which cannot be "
                    "stored.",
                )
            ],
        ),
        (
            '{"a": ["ok", "\\ud800"]}',
            [
                (
                    "data.a[1]",
                    "data.a[1] contains an unpaired surrogate (U+D800), which is not valid "
                    "Unicode.",
                )
            ],
        ),
        ('{"a": 1e400}', [("data.a", "data.a is inf, which JSON cannot represent.")]),
        (
            '{"a": {"b c": "\\udfff"}}',
            [
                (
                    'data.a["b c"]',
                    'data.a["b c"] contains an unpaired surrogate (U+DFFF), which is not valid '
                    "Unicode.",
                )
            ],
        ),
        ('{"a": "\\ud83d\\ude00 fine", "b": [1, 2.5, null, true]}', []),
    ],
)
def test_json_that_cannot_be_carried_is_named_by_its_path(raw, problems):
    assert json_problems(json.loads(raw), path="data") == problems


def test_nesting_is_refused_past_the_limit_at_any_depth_without_recursing():
    at_limit = json.loads(_nested(MAX_JSON_DEPTH))
    deep = [at_limit]
    for _ in range(50_000):  # far deeper than Python's recursion limit
        deep = [deep]

    assert json_problems(at_limit) == []
    [(path, message)] = json_problems(deep, path="data")
    assert path.startswith("data[0][0]")
    assert message == f"{path} is nested more than {MAX_JSON_DEPTH} levels deep; flatten it."


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2026-03-29T01:30:00+01:00", None),
        ("2026-03-29T01:30:00+14:00", None),
        ("2026-03-29T01:30:00-14:00", None),
        (
            "2020-01-01T00:00:00+16:00",
            "It has the UTC offset +16:00; the offsets of time zones lie within ±14:00.",
        ),
        (
            "2020-01-01T00:00:00-23:59",
            "It has the UTC offset -23:59; the offsets of time zones lie within ±14:00.",
        ),
        (
            "9999-12-31T23:00:00+00:00",
            "It is outside the dates every time zone can show (0001-01-02 to 9999-12-30 UTC).",
        ),
        (
            "0001-01-01T12:00:00+00:00",
            "It is outside the dates every time zone can show (0001-01-02 to 9999-12-30 UTC).",
        ),
        (
            "0001-01-01T00:00:00+01:00",
            "It is outside the dates every time zone can show (0001-01-02 to 9999-12-30 UTC).",
        ),
        ("9999-12-30T23:59:59+00:00", None),
        ("0001-01-02T00:00:00+00:00", None),
    ],
)
def test_a_date_must_be_one_every_school_zone_can_show(value, problem):
    assert datetime_problem(dt.datetime.fromisoformat(value), subject="It") == problem


def test_every_date_refused_would_have_failed_in_some_zone_and_every_accepted_one_works():
    for value in ["9999-12-31T23:00:00+00:00", "0001-01-01T05:00:00+00:00"]:
        moment = dt.datetime.fromisoformat(value)
        with pytest.raises(OverflowError):
            moment.astimezone(KIRITIMATI if moment.year == 9999 else BAKER)
        assert datetime_problem(moment, subject="It") is not None
    for value in ["9999-12-30T23:59:59+00:00", "0001-01-02T00:00:00+00:00"]:
        moment = dt.datetime.fromisoformat(value)
        assert datetime_problem(moment, subject="It") is None
        moment.astimezone(KIRITIMATI).isoformat()
        moment.astimezone(BAKER).isoformat()


def test_dates_inside_data_are_checked_when_asked():
    data = {"course": {"starts": "9999-12-31T23:00:00Z", "plain": "9999-12-31"}}

    assert json_problems(data, path="data") == []
    assert json_problems(data, path="data", datetimes=True) == [
        (
            "data.course.starts",
            "data.course.starts is outside the dates every time zone can show (0001-01-02 to "
            "9999-12-30 UTC).",
        )
    ]


def test_an_event_stored_with_a_date_no_zone_can_hold_is_still_enveloped():
    # Published before the check existed: the envelope writes it rather than failing forever.
    occurred = dt.datetime(9999, 12, 31, 23, tzinfo=dt.UTC)

    envelope = envelope_build(
        event_id="e",
        event_type="course.created",
        school_id=1,
        school_slug="s",
        occurred_at=occurred,
        data={"at": "9999-12-31T23:00:00+00:00", "ok": "2026-01-01T00:00:00Z"},
        tz=KIRITIMATI,
    )

    assert envelope["timestamp"] == "9999-12-31T23:00:00+00:00"
    assert envelope["data"] == {
        "at": "9999-12-31T23:00:00+00:00",
        "ok": "2026-01-01T14:00:00+14:00",
    }
    assert (
        datetime_localize(dt.datetime(1, 1, 1, tzinfo=dt.UTC), BAKER) == "0001-01-01T00:00:00+00:00"
    )
    assert datetimes_localize(["0001-01-01T00:00:00+00:00"], BAKER) == ["0001-01-01T00:00:00+00:00"]


def test_text_and_parameters_that_cannot_be_stored():
    assert text_problem("ok ✓ \U0001f600", subject="The key") is None
    assert (
        text_problem("a\x00", subject="The key")
        == "The key contains a NUL character (U+0000), which cannot be stored."
    )
    assert query_problems([("school", "\x00"), ("ok", "fine"), ("\x00x", "v")]) == [
        ("school", "The value contains a NUL character (U+0000), which cannot be stored."),
        (
            "\\u0000x",
            "The parameter's name contains a NUL character (U+0000), which cannot be stored.",
        ),
    ]
