"""The transport at its limits: answers cut off by the deadline, names that never resolve,
addresses that fail slowly, receivers that never read."""

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


# --- The deadline ----------------------------------------------------------------------------


@pytest.fixture
def close_delimited_dripper():
    """Answers 200 with no Content-Length (the body ends when the connection closes) and then
    sends the body one byte every 0.1 s for 5 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
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

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


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
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    for conn in held:
        conn.close()


def test_a_huge_body_to_a_receiver_that_does_not_read_ends_at_the_deadline(transport, never_reads):
    result = _send(
        transport, f"http://127.0.0.1:{never_reads}/hook", timeout=1, body=b"x" * 50_000_000
    )

    assert result.error_kind == ErrorKind.TIMEOUT
    assert result.duration_ms < 2500
