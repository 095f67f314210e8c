"""The suite never connects anywhere but loopback.

An audit hook sees every ``socket.connect`` of the test process: a connect to any other address
is refused (PermissionError) before a packet leaves, and connects can be recorded for a test to
inspect. With tests/resolver.py (no DNS queries) this keeps the suite on the machine whatever a
test, a bug or a generated input asks for.
"""

from __future__ import annotations

import ipaddress
import sys


class ConnectGuard:
    def __init__(self) -> None:
        self.recording = False
        self.addresses: list[str] = []

    def __call__(self, event: str, args: tuple) -> None:
        if event != "socket.connect":
            return
        address = args[1]
        if not isinstance(address, tuple):
            return  # a Unix socket
        host = str(address[0]).split("%")[0]
        if self.recording:
            self.addresses.append(host)
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise PermissionError(f"the test suite refused a connection to {host}")


GUARD = ConnectGuard()
sys.addaudithook(GUARD)
