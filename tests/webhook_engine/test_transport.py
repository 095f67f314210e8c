import contextlib
import socket
import threading
import time

import pytest

from tests.receiver import Reply
from webhook_engine.destinations import DestinationPolicy
from webhook_engine.errors import ErrorKind
from webhook_engine.transport import Transport

LOOPBACK = DestinationPolicy.from_cidrs(["127.0.0.0/8"])


@pytest.fixture
def transport():
    client = Transport(policy=LOOPBACK)
    yield client
    client.close()


def _send(transport, url, *, timeout=5.0, max_body=65536, body=b'{"a":1}'):
    return transport.send(
        url=url,
        body=body,
        headers={"Content-Type": "application/json", "webhook-id": "msg_1"},
        timeout_seconds=timeout,
        max_body_bytes=max_body,
    )


def test_a_2xx_answer_is_a_success_with_status_headers_and_body(transport, receiver):
    receiver.script("/ok", Reply(status=201, body=b"created", headers={"X-Trace": "abc"}))

    result = _send(transport, receiver.url("/ok"))

    assert result.ok
    assert (result.status, result.body, result.body_truncated) == (201, b"created", False)
    assert result.headers["X-Trace"] == "abc"
    assert result.request_headers["Content-Type"] == "application/json"
    assert result.request_headers["webhook-id"] == "msg_1"
    [received] = receiver.received("/ok")
    assert received.body == b'{"a":1}'
    assert received.headers["user-agent"].startswith("SchoolWebhooks/")


def test_an_error_status_is_recorded_with_its_code(transport, receiver):
    receiver.script("/err", Reply(status=503, body=b"maintenance"))

    result = _send(transport, receiver.url("/err"))

    assert (result.ok, result.status, result.error_kind) == (False, 503, ErrorKind.HTTP_STATUS)
    assert result.body == b"maintenance"
    assert "503" in result.error_message


def test_a_redirect_is_recorded_and_not_followed(transport, receiver):
    receiver.script(
        "/moved", Reply(status=301, headers={"Location": receiver.url("/elsewhere")}, body=b"")
    )

    result = _send(transport, receiver.url("/moved"))

    assert (result.status, result.error_kind) == (301, ErrorKind.REDIRECT)
    assert receiver.url("/elsewhere") in result.error_message
    assert [r.path for r in receiver.received()] == ["/moved"]


def test_connection_refused_is_recorded_as_such(transport):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.

    result = _send(transport, f"http://127.0.0.1:{port}/hook")

    assert (result.status, result.error_kind) == (None, ErrorKind.CONNECTION)
    assert "refused" in result.error_message


def test_a_slow_receiver_is_cut_off_at_the_deadline(transport, receiver):
    receiver.script("/slow", Reply(delay_seconds=4))

    result = _send(transport, receiver.url("/slow"), timeout=1)

    assert (result.status, result.error_kind) == (None, ErrorKind.TIMEOUT)
    assert result.duration_ms < 3000  # stopped at the deadline, not when the receiver answered


def test_a_receiver_dripping_bytes_cannot_outlast_the_whole_attempt_deadline(transport, receiver):
    # Every byte arrives well within a per-read timeout; only a wall-clock deadline stops it.
    receiver.script("/drip", Reply(drip_seconds=0.1))

    result = _send(transport, receiver.url("/drip"), timeout=1)

    assert result.error_kind == ErrorKind.TIMEOUT
    assert result.duration_ms < 3000  # the full answer would take over 5 s


def test_the_response_body_is_read_only_up_to_the_cap(transport, receiver):
    receiver.script("/big", Reply(body=b"x" * 200_000))

    result = _send(transport, receiver.url("/big"), max_body=65536)

    assert result.ok
    assert len(result.body) == 65536
    assert result.body_truncated is True


def test_a_name_that_does_not_resolve_is_a_dns_error(transport, monkeypatch):
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)

    result = _send(transport, "http://hooks.school.example/hook")

    assert (result.status, result.error_kind) == (None, ErrorKind.DNS)


def test_a_private_destination_is_blocked_before_any_connection(receiver):
    strict = Transport(policy=DestinationPolicy())

    result = _send(strict, receiver.url("/private"))

    assert result.error_kind == ErrorKind.BLOCKED
    assert "127.0.0.1 is a loopback address" in result.error_message
    assert receiver.received() == []


def test_an_unusable_url_is_an_invalid_url_error(transport):
    result = _send(transport, "ftp://127.0.0.1/hook")

    assert result.error_kind == ErrorKind.INVALID_URL


@pytest.mark.parametrize("host", ["a..b.example.org", "a" * 64 + ".example.org"])
def test_a_host_that_is_no_possible_dns_name_is_an_invalid_url_error(transport, host):
    """A URL saved before such hosts were refused on save (an empty label, one over 63
    characters) cannot even be looked up: the attempt is an unusable URL, as the form would
    say, not an unexpected error with a traceback logged for every attempt."""
    result = _send(transport, f"http://{host}/hook")

    assert result.error_kind == ErrorKind.INVALID_URL
    assert result.error_message == "The URL cannot be used: its host is not a valid host name."


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-School": "日本語"}, "its value has characters HTTP headers cannot carry"),
        ({"X-School": " leading"}, "Invalid leading whitespace"),
        ({"X-Bad\n": "1"}, "Invalid leading whitespace, reserved character(s), or return"),
        ({"X-Sch\u00f6ol": "1"}, "its name has characters HTTP header names cannot carry"),
    ],
)
def test_a_custom_header_http_cannot_carry_is_a_configuration_error_naming_it(
    transport, receiver, headers, reason
):
    """Headers a first release stored before today's checks refused them: nothing can send
    them, which is the webhook's setting to correct, not its URL nor an unexpected error."""
    result = _send_with(transport, receiver.url("/hook"), headers)

    assert result.error_kind == ErrorKind.CONFIGURATION
    [name] = headers
    assert result.error_message.startswith(f"The custom header {name!r} cannot be sent: ")
    assert reason in result.error_message
    assert receiver.received() == []


@pytest.mark.parametrize(
    "value", ["café", "a\tb", "trailing ", ""], ids=["latin-1", "tab", "trailing", "empty"]
)
def test_a_custom_header_value_beyond_visible_ascii_that_http_can_carry_is_sent_as_it_is(
    transport, receiver, value
):
    """Latin-1 letters, a tab, spaces after the first character, an empty value: what an
    HTTP/1.1 header value can carry goes out unchanged."""
    result = _send_with(transport, receiver.url("/hook"), {"X-School": value})

    assert result.ok, result.error_message
    assert result.request_headers["X-School"] == value
    [received] = receiver.received("/hook")
    assert received.headers["x-school"] == value


def _send_with(transport, url, headers):
    return transport.send(
        url=url, body=b"{}", headers=headers, timeout_seconds=5.0, max_body_bytes=65536
    )


def test_a_header_that_would_split_the_request_is_refused_before_anything_is_sent(
    transport, receiver
):
    result = transport.send(
        url=receiver.url("/hook"),
        body=b"{}",
        headers={"X-Course": "c1\r\nX-Injected: 1"},
        timeout_seconds=5.0,
        max_body_bytes=65536,
    )

    assert not result.ok
    assert "return character" in result.error_message
    assert receiver.received() == []


def test_a_cookie_a_receiver_sets_never_travels_with_later_requests(transport, receiver):
    receiver.script("/set", Reply(status=200, headers={"Set-Cookie": "session=abc; Path=/"}))
    receiver.script("/next", Reply(status=200))

    answer = _send(transport, receiver.url("/set"))
    _send(transport, receiver.url("/next"))

    [later] = receiver.received("/next")
    assert "cookie" not in {name.lower() for name in later.headers}
    # The answer's header itself is kept with the attempt, as any other.
    assert answer.ok
    assert answer.headers["Set-Cookie"] == "session=abc; Path=/"


def test_proxy_settings_in_the_environment_are_ignored(transport, receiver, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://10.255.255.1:3128")
    monkeypatch.setenv("http_proxy", "http://10.255.255.1:3128")
    receiver.script("/direct", Reply(status=204))

    result = _send(transport, receiver.url("/direct"))

    assert (result.ok, result.status) == (True, 204)
    assert len(receiver.received("/direct")) == 1


def test_connections_are_reused_between_attempts(transport, receiver):
    _send(transport, receiver.url("/a"))
    _send(transport, receiver.url("/b"))

    pool = transport.adapter.poolmanager
    [connection_pool] = list(pool.pools._container.values())
    assert connection_pool.num_connections == 1
    assert len(receiver.received()) == 2


@contextlib.contextmanager
def _raw_server(handle):
    """A TCP server on a free loopback port that gives each connection it accepts to
    ``handle(conn, stop)`` (in its accepting thread), until the block ends; yields the port.
    ``handle`` owns the connection (closes it or keeps it); the server closes what it kept."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()
    kept = []

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            kept.append(conn)
            handle(conn, stop)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        for conn in kept:
            conn.close()


@pytest.fixture
def drip_tls_server():
    """Accepts TCP and answers a TLS ClientHello with a handshake record, one byte every 0.2 s,
    so the handshake never completes on its own."""

    def drip(conn, stop):
        conn.recv(4096)
        record = b"\x16\x03\x03\x40\x00" + b"\x02" * 64  # a long handshake record
        for byte in record:
            if stop.is_set():
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    with _raw_server(drip) as port:
        yield port


def test_a_tls_handshake_that_never_completes_ends_at_the_deadline(transport, drip_tls_server):
    result = _send(transport, f"https://127.0.0.1:{drip_tls_server}/hook", timeout=1)

    assert result.error_kind in {ErrorKind.TIMEOUT, ErrorKind.TLS}
    assert result.duration_ms < 3000  # the full handshake record would take 14 s


def test_a_name_that_takes_forever_to_resolve_is_cut_off_at_the_deadline(transport, monkeypatch):
    def slow(*args, **kwargs):
        time.sleep(4)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")

    monkeypatch.setattr(socket, "getaddrinfo", slow)

    result = _send(transport, "http://slow-dns.example.org/hook", timeout=1)

    assert result.error_kind in {ErrorKind.TIMEOUT, ErrorKind.DNS}
    assert result.duration_ms < 3000


# --- The deadline ----------------------------------------------------------------------------


@pytest.fixture
def close_delimited_dripper():
    """Answers 200 with no Content-Length (the body ends when the connection closes) and then
    sends the body one byte every 0.1 s for 5 s."""

    def drip(conn, stop):
        conn.recv(65536)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            for _ in range(50):
                if stop.is_set():
                    break
                conn.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass
        conn.close()

    with _raw_server(drip) as port:
        yield port


def test_an_answer_still_being_read_at_the_deadline_is_a_timeout_not_a_success(
    transport, close_delimited_dripper
):
    result = _send(transport, f"http://127.0.0.1:{close_delimited_dripper}/hook", timeout=1)

    assert result.duration_ms < 3000
    assert result.error_kind == ErrorKind.TIMEOUT, (result.status, result.body)


def test_a_body_with_content_length_still_being_read_at_the_deadline_is_a_timeout(
    transport, receiver
):
    # For comparison: the same receiver behaviour with a Content-Length is a timeout.
    receiver.script("/drip", Reply(drip_seconds=0.1))

    result = _send(transport, receiver.url("/drip"), timeout=1)

    assert result.error_kind == ErrorKind.TIMEOUT


# --- Name resolution: one webhook's stuck DNS must not stall the others -------------------


def test_names_that_hang_for_two_webhooks_do_not_hold_up_another_webhooks_lookup(
    transport, receiver, resolver, monkeypatch
):
    # Two webhooks whose domain's name servers never answer, each at its default concurrency
    # of 8 (WEBHOOKS_ENDPOINT_CONCURRENCY), out of the process's 128 send threads.
    release = threading.Event()
    entered = threading.Semaphore(0)
    answering = socket.getaddrinfo  # the suite's fake resolver

    def getaddrinfo(host, *args, **kwargs):
        if str(host).endswith("stuck.example.org"):
            entered.release()
            release.wait(10)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return answering(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    resolver.answer("fine.example.org", ["127.0.0.1"])
    receiver.script("/fine", Reply(status=204))
    stuck = [
        threading.Thread(
            target=_send,
            args=(transport, f"http://hooks{n % 2}.stuck.example.org/hook"),
            kwargs={"timeout": 1.0},
        )
        for n in range(16)
    ]
    try:
        for thread in stuck:
            thread.start()
        for _ in stuck:
            assert entered.acquire(timeout=5)

        result = _send(transport, f"http://fine.example.org:{receiver.port}/fine", timeout=1.0)

        assert (result.error_kind, result.status) == (ErrorKind.NONE, 204), result.error_message
    finally:
        release.set()
        for thread in stuck:
            thread.join()


def test_several_addresses_that_each_fail_slowly_do_not_outlast_the_deadline(
    transport, resolver, monkeypatch
):
    # A name with ten addresses, each answering the connection attempt with "no route to host"
    # after 0.4 s (an ICMP unreachable that comes after the last router's ARP gives up).
    import errno

    from webhook_engine import transport as module

    def unreachable_after_a_while(address, timeout=None, **kwargs):
        if timeout is not None and timeout < 0.4:
            time.sleep(timeout)
            raise TimeoutError("timed out")
        time.sleep(0.4)
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(module.urllib3_connection, "create_connection", unreachable_after_a_while)
    resolver.answer("many.example.org", [f"127.0.0.{n}" for n in range(2, 12)])

    result = _send(transport, "http://many.example.org/hook", timeout=1.0)

    assert result.error_kind in {ErrorKind.TIMEOUT, ErrorKind.CONNECTION}
    assert result.duration_ms < 1500  # ten addresses at 0.4 s each take 4 s


@pytest.fixture
def never_reads():
    """Accepts connections and never reads from them."""
    with _raw_server(lambda conn, stop: None) as port:
        yield port


def test_a_huge_body_to_a_receiver_that_does_not_read_ends_at_the_deadline(transport, never_reads):
    result = _send(
        transport, f"http://127.0.0.1:{never_reads}/hook", timeout=1, body=b"x" * 50_000_000
    )

    assert result.error_kind == ErrorKind.TIMEOUT
    assert result.duration_ms < 2500
