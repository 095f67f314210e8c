"""The production environment the README's Deploy section gives passes `check --deploy`, and
its web processes serve the admin's static files."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_deploy_environment() -> dict[str, str]:
    """The env file under ``<!-- deploy-environment -->`` in the README, as a dict."""
    match = re.search(
        r"<!-- deploy-environment -->\n```\w*\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S
    )
    assert match, "README.md has no <!-- deploy-environment --> block"
    lines = [line for line in match[1].splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def check_deploy(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Only the README's variables: nothing from the test run (tests/settings.py sets its own).
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_deploy_passes_with_the_readme_production_environment():
    environment = readme_deploy_environment()

    result = check_deploy(environment)

    assert environment["DJANGO_DEBUG"] == "false"
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_without_https():
    environment = {**readme_deploy_environment(), "DJANGO_HTTPS": "false"}

    result = check_deploy(environment)

    assert result.returncode == 1
    found = sorted(set(re.findall(r"security\.W\d+", result.stderr)))
    assert found == ["security.W004", "security.W008", "security.W012", "security.W016"]


@pytest.mark.django_db
def test_with_https_plain_http_is_redirected_but_health_is_not(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    login = client.get("/admin/login/")
    health = client.get("/health/")

    assert (login.status_code, login["Location"]) == (301, "https://testserver/admin/login/")
    assert health.status_code == 200


def test_check_deploy_warns_when_the_limits_would_be_counted_per_process():
    environment = readme_deploy_environment()
    del environment["DJANGO_CACHE_URL"]

    result = check_deploy(environment)

    assert result.returncode == 1
    assert sorted(set(re.findall(r"\w+\.W\d+", result.stderr))) == ["webhooks.W001"]
    assert "Set DJANGO_CACHE_URL to a Redis database" in result.stderr


def test_the_web_processes_serve_the_collected_static_files(settings, tmp_path):
    """With DEBUG off, as deployed: after ``collectstatic`` the admin's CSS and JavaScript are
    served under /static/, compressed for browsers that accept it, with caching headers."""
    settings.DEBUG = False
    settings.WHITENOISE_AUTOREFRESH = False  # indexed once at start-up, as deployed
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()  # a new handler: its middleware reads the collected files

    css = client.get("/static/admin/css/base.css")
    script = client.get(
        "/static/subscriptions/webhook_form.js", headers={"accept-encoding": "gzip"}
    )

    assert (css.status_code, css["Content-Type"]) == (200, 'text/css; charset="utf-8"')
    assert "max-age" in css["Cache-Control"]
    assert b"".join(css.streaming_content).startswith(b"/*")
    assert (script.status_code, script["Content-Encoding"]) == (200, "gzip")
    assert client.get("/static/admin/css/nothing-here.css").status_code == 404
