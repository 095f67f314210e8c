"""docs/receivers.md: every verification snippet, verbatim, run against real deliveries.

Python snippets run in-process, JavaScript with the machine's ``node``, PHP with ``php``
(``scripts/prerequisites.sh`` installs Debian's ``php-cli``). Each gets real deliveries (Send
Test to a receiver on 127.0.0.1) and the same deliveries with one byte of the body changed: it
must accept the first and refuse the second.
"""

import base64
import json
import re
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from deliveries.services import delivery_test_send
from tests.subscriptions.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "receivers.md"
SNIPPET = re.compile(
    r"<!-- verify: (?P<profile>\w+) (?P<language>\w+) -->\n```\w+\n(?P<code>.*?)```", re.S
)

NODE_RUN = """
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(input.map((c) =>
  verify(Buffer.from(c.body, "base64"), c.headers, c.key))));
"""
PHP_RUN = """
$input = json_decode(stream_get_contents(STDIN), true);
echo json_encode(array_map(
    fn ($c) => verify(base64_decode($c['body']), $c['headers'], $c['key']), $input));
"""

# (profile, content type, event type) of the deliveries each profile's snippet verifies.
DELIVERIES = {
    "standard": [
        ("standard", "json", "course.created"),
        ("standard", "xml", "course.created"),
        ("braincert", "json", "sale.completed"),
        ("braincert", "xml", "user.created"),
        ("edume", "json", "activity.finished"),
        ("edusign", "json", "student.signed"),
        ("edudip", "json", "webinar.created"),
    ],
    "edusign": [
        ("edusign", "json", "student.signed"),
        ("edusign", "json", "absence.justified"),
        ("edusign", "json", "app_parameters.updated"),
    ],
    "edudip": [
        ("edudip", "json", "webinar.created"),
        ("edudip", "json", "webinar.deleted"),
    ],
}


def _snippets() -> dict[tuple[str, str], str]:
    return {(m["profile"], m["language"]): m["code"] for m in SNIPPET.finditer(DOC.read_text())}


def test_the_doc_has_a_python_node_and_php_snippet_per_signature_scheme():
    assert sorted(_snippets()) == sorted(
        (profile, language)
        for profile in ("standard", "edusign", "edudip")
        for language in ("python", "node", "php")
    )


def _cases(school, receiver, client, profile: str) -> list[dict]:
    """Each delivery as its receiver got it, then the same with its body changed."""
    pem = client.get("/.well-known/webhooks/ecdsa-public-key.pem").content.decode()
    cases = []
    for index, (webhook_profile, content_type, event_type) in enumerate(DELIVERIES[profile]):
        webhook = SubscriptionFactory(
            school=school,
            url=receiver.url(f"/{index}"),
            profile=webhook_profile,
            content_type=content_type,
        )
        attempt = delivery_test_send(subscription=webhook, event_type=event_type)
        assert attempt.response_status == 200
        [received] = receiver.received(f"/{index}")
        key = pem if profile == "edudip" else webhook.secret
        changed = received.body.replace(b":", b": ", 1).replace(b"><", b"> <", 1)
        assert changed != received.body
        for body in (received.body, changed):
            cases.append(
                {"body": base64.b64encode(body).decode(), "headers": received.headers, "key": key}
            )
    return cases


def _expected(cases: list[dict]) -> list[bool]:
    return [index % 2 == 0 for index in range(len(cases))]


@pytest.mark.parametrize("profile", sorted(DELIVERIES))
def test_the_python_snippet_verifies_real_deliveries(profile, school, receiver, client):
    cases = _cases(school, receiver, client, profile)
    namespace: dict = {}
    exec(_snippets()[(profile, "python")], namespace)  # noqa: S102 - the documentation's code

    results = [
        namespace["verify"](base64.b64decode(case["body"]), case["headers"], case["key"])
        for case in cases
    ]

    assert results == _expected(cases)


@pytest.mark.parametrize("profile", sorted(DELIVERIES))
def test_the_node_snippet_verifies_real_deliveries(profile, school, receiver, client):
    cases = _cases(school, receiver, client, profile)

    done = subprocess.run(
        ["node", "-e", _snippets()[(profile, "node")] + NODE_RUN],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == _expected(cases)


@pytest.mark.parametrize("profile", sorted(DELIVERIES))
def test_the_php_snippet_verifies_real_deliveries(profile, school, receiver, client, tmp_path):
    cases = _cases(school, receiver, client, profile)
    script = tmp_path / "verify.php"
    script.write_text("<?php\n" + _snippets()[(profile, "php")] + PHP_RUN)

    done = subprocess.run(
        ["php", str(script)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout) == _expected(cases)


README = DOC.parents[1] / "README.md"
README_XML = re.compile(
    r"<!-- readme-example: verify xml -->\n *```python\n(?P<code>.*?) *```", re.S
)


def test_the_readmes_verification_of_an_xml_body_works_as_written(school, receiver):
    [code] = [textwrap.dedent(m["code"]) for m in README_XML.finditer(README.read_text())]
    webhook = SubscriptionFactory(
        school=school, url=receiver.url("/xml"), content_type="xml", topics=["course.*"]
    )
    delivery_test_send(subscription=webhook, event_type="course.created")
    [received] = receiver.received("/xml")

    def run(body: bytes) -> dict:
        namespace = {"request": SimpleNamespace(body=body, headers=received.headers)}
        exec(code.replace("whsec_...", webhook.secret), namespace)  # noqa: S102 - the README's code
        return namespace

    verified = run(received.body)["webhook"]

    assert verified.tag == "webhook"
    assert verified.findtext("type") == "course.created"
    with pytest.raises(WebhookVerificationError):
        run(received.body.replace(b"course.created", b"course.deleted"))
