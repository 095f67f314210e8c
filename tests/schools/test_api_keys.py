import hashlib
import io
import logging

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from schools.models import ApiKey, School
from schools.services import api_key_create, api_key_revoke, platform_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_failure_counters():
    cache.clear()


def _client(key=None):
    client = APIClient()
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_key_is_random_prefixed_hashed_at_rest_and_shown_once(school):
    api_key, key = api_key_create(school=school, name="CRM")
    _, other = api_key_create(school=school, name="ERP")

    assert key.startswith("whk_")
    assert len(key) >= 4 + 8 + 32  # prefix, lookup part, at least 192 random bits
    assert key != other
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert stored.prefix == key[:12]
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(ApiKey.objects.values().get(pk=api_key.pk))


def test_a_sixth_active_key_is_refused_and_revoking_frees_a_slot(school):
    keys = [api_key_create(school=school, name=f"Key {n}")[0] for n in range(5)]

    with pytest.raises(ValidationError) as raised:
        api_key_create(school=school, name="Sixth")
    api_key_revoke(api_key=keys[0])
    api_key_create(school=school, name="Sixth")

    assert raised.value.message_dict == {
        "__all__": ["Lycée Victor Hugo already has 5 active API keys; revoke one first."]
    }
    assert ApiKey.objects.filter(school=school, revoked_at__isnull=True).count() == 5


def test_the_command_prints_the_key_alone_on_its_last_line_and_it_works(school):
    out = io.StringIO()

    call_command("create_api_key", "--school", school.slug, "--name", "CRM", stdout=out)

    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("whk_")
    assert _client(key).get("/api/v1/subscriptions/").status_code == 200


def test_the_command_refuses_a_sixth_key_and_an_unknown_school(school):
    for n in range(5):
        api_key_create(school=school, name=f"Key {n}")

    with pytest.raises(CommandError, match="already has 5 active API keys"):
        call_command("create_api_key", "--school", school.slug)
    with pytest.raises(CommandError, match="No school with the slug 'nowhere'"):
        call_command("create_api_key", "--school", "nowhere")


def test_a_missing_key_is_a_401_with_the_bearer_challenge(db):
    response = _client().get("/api/v1/subscriptions/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "header",
    ["Bearer whk_not-a-real-key-at-all", "Token abc", "Bearer ", "Basic dXNlcjpwdw=="],
)
def test_an_invalid_key_or_scheme_is_a_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/subscriptions/")

    assert response.status_code == 401
    assert set(response.json()) == {"detail"}


def test_a_revoked_key_is_refused_at_once(school):
    api_key, key = api_key_create(school=school, name="CRM")
    assert _client(key).get("/api/v1/subscriptions/").status_code == 200

    api_key_revoke(api_key=api_key)

    response = _client(key).get("/api/v1/subscriptions/")
    assert response.status_code == 401
    assert response.json() == {"detail": "The API key is invalid or has been revoked."}


def test_using_a_key_records_when(school):
    api_key, key = api_key_create(school=school, name="CRM")

    _client(key).get("/api/v1/subscriptions/")

    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


def test_repeated_failed_authentication_is_throttled_but_valid_keys_still_get_in(school, settings):
    settings.WEBHOOKS_AUTH_FAILURES_PER_MINUTE = 3
    _, key = api_key_create(school=school, name="CRM")
    guess = _client("whk_guess0000guessguessguessguessguessguess")
    for _ in range(3):
        assert guess.get("/api/v1/subscriptions/").status_code == 401

    throttled = guess.get("/api/v1/subscriptions/")
    valid = _client(key).get("/api/v1/subscriptions/")

    assert throttled.status_code == 429
    assert throttled.json()["detail"].startswith("Too many failed authentications")
    assert int(throttled["Retry-After"]) <= 60
    assert valid.status_code == 200  # someone guessing from the same address locks nobody out


def test_behind_a_proxy_failures_are_counted_per_client_address(school, settings):
    settings.WEBHOOKS_AUTH_FAILURES_PER_MINUTE = 2
    settings.WEBHOOKS_TRUSTED_PROXIES = 1
    guess = _client("whk_guess0000guessguessguessguessguessguess")
    for _ in range(2):
        guess.get("/api/v1/subscriptions/", HTTP_X_FORWARDED_FOR="203.0.113.7")

    blocked = guess.get("/api/v1/subscriptions/", HTTP_X_FORWARDED_FOR="203.0.113.7")
    other = guess.get("/api/v1/subscriptions/", HTTP_X_FORWARDED_FOR="198.51.100.9")

    assert blocked.status_code == 429
    assert other.status_code == 401  # another client behind the same proxy


def test_the_platform_key_cannot_read_school_data(db):
    _, key = platform_key_create(name="LMS")

    response = _client(key).get("/api/v1/subscriptions/")

    assert response.status_code == 403
    assert response.json() == {"detail": "This endpoint needs a school's API key."}


def test_create_school_and_create_platform_key_commands(db):
    out = io.StringIO()

    call_command(
        "create_school",
        "--slug=college-jean-moulin",
        "--name=Collège Jean Moulin",
        "--timezone=Europe/Paris",
        "--language=fr",
        stdout=out,
    )
    call_command("create_platform_key", "--name=LMS", stdout=out)

    school = School.objects.get(slug="college-jean-moulin")
    assert (school.timezone, school.language) == ("Europe/Paris", "fr")
    assert out.getvalue().strip().splitlines()[-1].startswith("whp_")
    with pytest.raises(CommandError, match="timezone: Mars/Olympus is not an IANA time zone"):
        call_command("create_school", "--slug=x", "--name=X", "--timezone=Mars/Olympus")


def test_the_key_commands_refuse_a_name_too_long_with_a_clear_error(school):
    """An operator's typo is a one-line error, not the database's DataError and a traceback."""
    too_long = "x" * 101
    message = "name: Ensure this value has at most 100 characters"
    with pytest.raises(CommandError, match=message):
        call_command("create_api_key", "--school", school.slug, "--name", too_long)
    with pytest.raises(CommandError, match=message):
        call_command("create_platform_key", "--name", too_long)
    assert not ApiKey.objects.exists()


def test_a_failed_authentication_during_a_cache_outage_is_one_line(school, settings, caplog):
    """DJANGO_CACHE_URL's Redis down: each failed API authentication still answers 401 and
    says in one line that it could not be counted, not with a traceback per request."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        },
    }

    with caplog.at_level(logging.ERROR, logger="schools.throttles"):
        response = _client("whk_not_a_key_0123456789abcdef").get("/api/v1/subscriptions/")

    assert response.status_code == 401
    [line] = [record for record in caplog.records if record.name == "schools.throttles"]
    assert "cannot be counted" in line.getMessage()
    assert "Connection refused" in line.getMessage()
    assert line.exc_info is None
