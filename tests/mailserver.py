"""A mail server on loopback that keeps each message it is given (enough SMTP for Django's
backend: EHLO, MAIL, RCPT, DATA, QUIT)."""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from email.message import EmailMessage


class MailServer:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.say("220 localhost")
                while line := self.rfile.readline():
                    command = line.decode("ascii", "replace").strip().upper()
                    if command.startswith(("EHLO", "HELO")):
                        self.say("250 localhost")
                    elif command.startswith(("MAIL", "RCPT", "RSET", "NOOP")):
                        self.say("250 OK")
                    elif command == "DATA":
                        self.say("354 End data with <CR><LF>.<CR><LF>")
                        outer._keep(self._data())
                        self.say("250 OK")
                    elif command == "QUIT":
                        self.say("221 Bye")
                        return
                    else:
                        self.say("502 Not implemented")

            def _data(self) -> bytes:
                lines = []
                while (line := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(line[1:] if line.startswith(b"..") else line)
                return b"".join(lines)

            def say(self, reply: str) -> None:
                self.wfile.write(reply.encode("ascii") + b"\r\n")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]

    def _keep(self, raw: bytes) -> None:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self._arrived:
            self.messages.append(message)  # type: ignore[arg-type]
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[EmailMessage]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def start(self) -> MailServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
