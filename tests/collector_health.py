"""A local stand-in for the contrib collector's `health_check` extension (port 13133)."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CollectorHealth:
    """The contrib collector's `health_check` extension (v1, the default): `GET <path>` (here
    `/`) is 200 `{"status": "Server available", "upSince", "uptime"}` once the pipelines run,
    503 `{"status": "Server not available"}` otherwise; other paths are 404."""

    def __init__(self, ready: bool = True, hang_s: float = 0.0, body: bytes | None = None) -> None:
        """`body` replaces the JSON answer (a health URL that points at something else)."""
        self.ready, self.hang_s, self.hits = ready, hang_s, 0
        self.body = body
        self._release = threading.Event()
        since = datetime.now(UTC).isoformat()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                outer.hits += 1
                if outer.hang_s:
                    outer._release.wait(outer.hang_s)
                if self.path != "/":
                    self.send_error(404)
                    return
                status = 200 if outer.ready else 503
                text = "Server available" if outer.ready else "Server not available"
                body = (
                    outer.body
                    or json.dumps({"status": text, "upSince": since, "uptime": "1m0s"}).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
