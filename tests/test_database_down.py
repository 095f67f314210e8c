"""While the database cannot be reached, answers are 503 with Retry-After, never 500."""

import pytest
from django.db import connection


@pytest.fixture
def database_unreachable(db):
    """The next queries go to a port where no database listens; the connection is restored."""
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    yield
    connection.close()
    connection.settings_dict["PORT"] = port
    connection.ensure_connection()


def test_the_api_answers_503_while_the_database_is_unreachable(client, database_unreachable):
    response = client.get(
        "/api/v1/subscriptions/", HTTP_AUTHORIZATION="Bearer whk_anything_at_all_0123456789"
    )

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["detail"].startswith("The database cannot be reached")


def test_the_admin_answers_503_while_the_database_is_unreachable(database_unreachable):
    from django.test import Client

    page = Client(raise_request_exception=False).post(
        "/admin/login/", {"username": "ada", "password": "anything"}
    )

    assert page.status_code == 503
    assert page["Retry-After"] == "5"
    assert b"database cannot be reached" in page.content
