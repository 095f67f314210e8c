"""`make run`'s supervisor: whether the web server's port can be used."""

import socket

from webhooks_project.serve import _port_free


def test_a_port_whose_last_connections_wait_out_time_wait_is_free_to_listen_on_again():
    """Stopping `make run` leaves the demo deliveries' connections to the web server in
    TIME-WAIT for a minute; starting it again at once must not call the port busy."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as web servers listen
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME-WAIT
        client.recv(1)
        client.close()
    assert _port_free("127.0.0.1", port)


def test_a_port_something_listens_on_is_busy():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not _port_free("127.0.0.1", server.getsockname()[1])
