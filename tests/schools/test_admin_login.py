"""Failed admin logins are limited per client address and per username."""

import time

import pytest

from tests.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.django_db


def _login(client, username, password, address="192.0.2.1", forwarded="203.0.113.1"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        HTTP_X_FORWARDED_FOR=forwarded,
    )


def test_past_the_limit_even_the_right_password_waits_whatever_x_forwarded_for_says(
    client, school_admin, settings
):
    settings.WEBHOOKS_ADMIN_LOGIN_FAILURES = 10

    wrong = [
        _login(client, "ada", f"guess-{n}", forwarded=f"203.0.113.{n}").status_code
        for n in range(11)
    ]
    right = _login(client, "ada", ADMIN_PASSWORD, forwarded="198.51.100.7")

    assert wrong == [200] * 10 + [429]
    assert right.status_code == 429
    assert (
        "Too many failed logins for this account or from this address. Try again in 15 minutes."
        in right.content.decode()
    )
    assert "_auth_user_id" not in client.session


def test_guessing_one_account_from_many_addresses_is_limited_too(client, school_admin, settings):
    settings.WEBHOOKS_ADMIN_LOGIN_FAILURES = 3

    wrong = [_login(client, "ada", "guess", address=f"192.0.2.{n}").status_code for n in range(4)]
    right = _login(client, "ada", ADMIN_PASSWORD, address="192.0.2.200")

    assert wrong == [200, 200, 200, 429]
    assert right.status_code == 429


def test_the_lockout_ends_with_its_window(client, school_admin, settings):
    settings.WEBHOOKS_ADMIN_LOGIN_FAILURES = 1
    settings.WEBHOOKS_ADMIN_LOGIN_WINDOW_SECONDS = 1
    _login(client, "ada", "guess")
    assert _login(client, "ada", "guess").status_code == 429

    time.sleep(1.2)
    right = _login(client, "ada", ADMIN_PASSWORD)

    assert right.status_code == 302
    assert right["Location"] == "/admin/"


def test_a_right_password_within_the_limit_logs_in(client, school_admin):
    for n in range(3):
        _login(client, "ada", f"guess-{n}")

    response = _login(client, "ada", ADMIN_PASSWORD)

    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == school_admin.pk
