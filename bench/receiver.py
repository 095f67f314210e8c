"""A fast HTTP receiver for benchmarks: answers every POST with 200 and counts requests.

Run as ``python -m bench.receiver PORT``; prints ``ready`` when listening.
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY_SECONDS = int(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if DELAY_SECONDS:
            time.sleep(DELAY_SECONDS)
        # One write for the whole answer: split writes stall on Nagle + delayed ACK.
        self.wfile.write(RESPONSE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    # The backlog is passed to listen() in the constructor: set before it, not after.
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
