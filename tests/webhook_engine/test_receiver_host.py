import pytest

from webhook_engine.destinations import receiver_host


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Hooks.Example.org/school/1", "hooks.example.org:443"),
        ("https://hooks.example.org:443/school/2?x=1", "hooks.example.org:443"),
        ("http://hooks.example.org/a", "hooks.example.org:80"),
        ("https://hooks.example.org:8443/a", "hooks.example.org:8443"),
        ("http://127.0.0.1:8000/a", "127.0.0.1:8000"),
        ("https://[2001:db8::1]/a", "2001:db8::1:443"),
    ],
)
def test_the_webhooks_of_one_receiver_host_share_its_name_and_port(url, host):
    assert receiver_host(url) == host


def test_a_url_that_cannot_be_read_is_its_own_host():
    assert receiver_host("https://hooks.example.org:99999/a") == "https://hooks.example.org:99999/a"
    assert receiver_host("not a url") == "not a url"
    assert receiver_host("https://[2001:db8::1/a") == "https://[2001:db8::1/a"  # urlsplit raises
