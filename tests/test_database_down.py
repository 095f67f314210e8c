"""While the database cannot be reached, answers are 503 with Retry-After, never 500."""

import logging

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


def _request_logs(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("debug", [False, True])  # True: `make run`
def test_metrics_answer_503_with_one_line_that_says_why_while_the_database_is_unreachable(
    database_unreachable, settings, caplog, debug
):
    """Prometheus scrapes every 15 s: an outage must not write a traceback at each scrape."""
    from django.test import Client

    settings.DEBUG = debug
    settings.WEBHOOKS_METRICS_TOKEN = "metrics-token-0123456789"
    with caplog.at_level(logging.WARNING):
        response = Client(raise_request_exception=False).get(
            "/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-0123456789"
        )

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    [line] = _request_logs(caplog)
    assert "/metrics" in line.getMessage()
    assert "database is unreachable" in line.getMessage()
    assert line.exc_info is None
    assert "\n" not in line.getMessage()


def test_health_answers_503_with_one_line_that_says_why_while_the_database_is_unreachable(
    database_unreachable, caplog
):
    from django.test import Client

    with caplog.at_level(logging.WARNING):
        response = Client(raise_request_exception=False).get("/health/")

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable: OperationalError"
    [line] = _request_logs(caplog)
    assert "database unreachable (OperationalError" in line.getMessage()
    assert line.exc_info is None
    assert "\n" not in line.getMessage()
