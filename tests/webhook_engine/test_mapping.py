"""The small language vendor mappings are written in (webhook_engine/vendors/mapping.py)."""

from webhook_engine.vendors.mapping import (
    IS_SET,
    TEXT,
    UTC_MS,
    UTC_S,
    YES_NO,
    Const,
    Context,
    Each,
    Field,
    FirstOf,
    FullName,
    Obj,
    Rest,
    Row,
    lookup,
    spec_apply,
    spec_rows,
    suffix,
)

ROOT = {
    "event": {"id": "e-1", "type": "user.created", "occurred_at": "2026-03-26T09:00:00+01:00"},
    "school": {"id": 7, "slug": "lycee"},
    "data": {
        "user": {
            "id": 42,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "created_at": "2026-03-26T09:00:00.125+01:00",
            "roles": [{"id": 1, "name": "Student"}],
            "is_anonymous": False,
            "last_seen_at": "2026-03-26T10:00:00+01:00",
        },
        "certificate": {"issued": True, "expires_at": None},
        "course": {"id": 3},
    },
}


def _apply(spec):
    return spec_apply(spec, ROOT, Context(root=ROOT, dates=UTC_MS))


def test_fields_read_paths_format_values_and_write_dates_in_the_profiles_format():
    assert _apply(
        {
            "id": Field("event.id"),
            "user_id": Field("data.user.id", TEXT),
            "joined": Field("data.user.created_at"),
            "joined_day": Field("data.user.created_at", UTC_S),
            "school": Field("school.id", suffix(" (school)")),
            "kind": Const("learner"),
        }
    ) == {
        "id": "e-1",
        "user_id": "42",
        "joined": "2026-03-26T08:00:00.125Z",
        "joined_day": "2026-03-26T08:00:00Z",
        "school": "7 (school)",
        "kind": "learner",
    }


def test_what_the_event_lacks_is_left_out_never_made_up():
    assert _apply(
        {
            "avatar": Field("data.user.avatar_url"),
            "avatar_or_null": Field("data.user.avatar_url", default=None),
            "group": Obj("data.group", {"id": Field("id")}),
            "teams": Each("data.teams", {"id": Field("id")}),
            "empty": {"nothing": Field("data.nothing")},
            "name": FirstOf(Field("data.user.name"), FullName("data.user.first_name", "x")),
        }
    ) == {"avatar_or_null": None, "name": "Ada"}


def test_objects_lists_and_the_rest_of_an_object():
    assert _apply(
        {
            "user": Obj(
                "data.user",
                {
                    "userId": Field("id"),
                    "roles": Each("roles", {"role": Field("name", lookup({"Student": "learner"}))}),
                    "school": Field("$school.slug"),
                },
                rest=Rest(exclude=("id", "roles", "first_name", "last_name", "created_at")),
            ),
            "courses": Each("data.course", {"courseId": Field("id")}, single=True),
            "expires": Field("data.certificate.expires_at", IS_SET, YES_NO),
            "issued": Field("data.certificate.issued", YES_NO),
        }
    ) == {
        "user": {
            "userId": 42,
            "roles": [{"role": "learner"}],
            "school": "lycee",
            "isAnonymous": False,
            "lastSeenAt": "2026-03-26T09:00:00.000Z",
        },
        "courses": [{"courseId": 3}],
        "expires": "no",
        "issued": "yes",
    }


def test_the_rows_of_a_spec_say_where_each_vendor_field_comes_from():
    spec = {
        "type": Const("on_x"),
        "user": Obj(
            "data.user",
            {"roles": Each("roles", {"role_id": Field("id", TEXT)})},
            rest=Rest(exclude=("id",)),
        ),
        "when": Field("event.occurred_at", UTC_S),
    }

    assert spec_rows(spec) == [
        Row("type", 'always `"on_x"`'),
        Row("user", "`data.user`"),
        Row("user.roles", "`data.user.roles`, one item each"),
        Row("user.roles[].role_id", "`data.user.roles[].id`, as text"),
        Row("user.*", "every other property of `data.user`, its name in camelCase (not `id`)"),
        Row("when", "`event.occurred_at`, UTC to the second, `2024-02-14T12:00:00Z`"),
    ]


def test_dates_before_the_year_1000_keep_four_digit_years_in_utc_formats():
    root = {"data": {"born": "0500-03-01T10:30:00.125+01:00"}}
    spec = {"ms": Field("data.born", UTC_MS), "s": Field("data.born", UTC_S)}

    assert spec_apply(spec, root, Context(root=root, dates=UTC_MS)) == {
        "ms": "0500-03-01T09:30:00.125Z",
        "s": "0500-03-01T09:30:00Z",
    }
