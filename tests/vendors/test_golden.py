"""A guard for the guard: the golden comparison (golden.py) sees the differences it is for."""

import copy

from tests.vendors.golden import shape_differences, vendor_samples

USER_CREATED = vendor_samples("braincert")["samples"][0]["envelope"]


def test_the_sample_with_a_real_e_mail_has_no_difference():
    body = copy.deepcopy(USER_CREATED)
    body["payload"]["email"] = "john.doe@example.org"

    assert shape_differences(body, USER_CREATED) == []


def test_a_wrong_type_value_date_format_missing_or_extra_path_is_a_difference():
    body = copy.deepcopy(USER_CREATED)
    body["payload"]["email"] = "john.doe@example.org"
    body["payload"]["groups"][0]["group_id"] = 101
    body["payload"]["roles"][1]["role_name"] = "Teacher"
    body["created_at"] = "2024-02-14T10:30:00+00:00"
    del body["payload"]["avatar_url"]
    body["tenant_id"] = "3"

    assert shape_differences(body, USER_CREATED) == [
        "missing payload.avatar_url (null)",
        "extra tenant_id (string)",
        "payload.groups[].group_id is integer|string, the sample has string",
        "created_at is '2024-02-14T10:30:00+00:00', the sample has '2024-02-14T10:30:00.000Z'",
        "payload.groups[0].group_id is 101, the sample has '101'",
        "payload.roles[1].role_name is 'Teacher', the sample has 'Course Contributor'",
    ]


def test_placeholders_hidden_e_mails_and_one_of_values_accept_any_fitting_value():
    sample = {"id": "x1", "email": "[email\u00a0protected]", "kind": "free/paid", "n": 1}
    body = {"id": "e-42", "email": "ada@example.org", "kind": "paid", "n": 1.5}

    assert shape_differences(body, sample, placeholders={"id"}) == ["n is 1.5, the sample has 1"]
    assert shape_differences({**body, "email": "nobody", "kind": "gratis"}, sample) == [
        "id is 'e-42', the sample has 'x1'",
        "email is 'nobody', not an e-mail address",
        "kind is 'gratis', not one of 'free/paid'",
        "n is 1.5, the sample has 1",
    ]
