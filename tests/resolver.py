"""A stand-in for DNS: the suite never queries the machine's resolver (it is not on loopback).

Numeric hosts go to the real ``getaddrinfo`` with ``AI_NUMERICHOST``, which parses them without
any network (including forms such as ``2130706433`` and ``0177.0.0.1``). Names are answered from
a table; each name can have a sequence of answers (to act out DNS rebinding); any other name
fails as a non-existent domain would.
"""

from __future__ import annotations

import socket
from collections import defaultdict, deque
from collections.abc import Callable

# A public address (not a documentation range, which is not global) that tests never connect to.
PUBLIC_ADDRESS = "93.184.215.14"

DEFAULT_ANSWERS = {
    "localhost": ["127.0.0.1"],
}
PUBLIC_SUFFIXES = (".example.org", ".example.com", ".example.net")


class FakeResolver:
    def __init__(self, real_getaddrinfo: Callable) -> None:
        self._real = real_getaddrinfo
        self._answers: dict[str, deque[list[str]]] = defaultdict(deque)
        self.lookups: list[str] = []

    def answer(self, name: str, *answers: list[str]) -> None:
        """``name`` resolves to each address list in turn; the last one sticks."""
        self._answers[name.lower().rstrip(".")] = deque(answers)

    def _addresses(self, name: str) -> list[str]:
        key = name.lower().rstrip(".")
        queue = self._answers.get(key)
        if queue:
            return queue.popleft() if len(queue) > 1 else queue[0]
        if key in DEFAULT_ANSWERS:
            return DEFAULT_ANSWERS[key]
        if key.endswith(PUBLIC_SUFFIXES) or key in {s.lstrip(".") for s in PUBLIC_SUFFIXES}:
            return [PUBLIC_ADDRESS]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        if host is None:
            return self._real(host, port, family, type, proto, flags)
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            return self._real(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        self.lookups.append(name)
        results = []
        for address in self._addresses(name):
            results.extend(
                self._real(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)
            )
        return results
