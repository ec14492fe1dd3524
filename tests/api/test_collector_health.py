"""`/api/observability/health` checks the collector's `health_check` extension when
`collector_health_url` is set: up → fine, 503 / refused / hanging → listed as degraded, health
still 200 and still fast."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.api.test_langfuse_costs import HEALTH, closed_port


class CollectorHealth:
    """The contrib collector's `health_check` extension (v1, the default): `GET <path>` (here
    `/`) is 200 `{"status": "Server available", "upSince", "uptime"}` once the pipelines run,
    503 `{"status": "Server not available"}` otherwise; other paths are 404."""

    def __init__(self, ready: bool = True, hang_s: float = 0.0) -> None:
        self.ready, self.hang_s, self.hits = ready, hang_s, 0
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
                body = json.dumps({"status": text, "upSince": since, "uptime": "1m0s"}).encode()
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


@pytest.fixture
def collector() -> Iterator[Any]:
    made: list[CollectorHealth] = []

    def make(**kw: Any) -> CollectorHealth:
        made.append(CollectorHealth(**kw))
        return made[-1]

    yield make
    for c in made:
        c.close()


async def test_a_healthy_collector_is_reported_and_not_degraded(start_service, collector) -> None:
    up = collector()
    svc = await start_service(collector_health_url=up.url, health_cache_s=0)
    body = (await svc.http.get(HEALTH)).json()
    assert body["status"] == "ok", body["degraded"]
    assert body["collector"]["configured"] is True and body["collector"]["ok"] is True
    assert body["collector"]["detail"] == "HTTP 200 Server available"
    assert up.hits == 1


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ("not ready", "collector: HTTP 503 Server not available"),
        ("refused", "collector: unreachable (ConnectError)"),
        ("hanging", "collector: no answer within 0.5 s"),
    ],
)
async def test_a_failing_collector_is_degraded_and_health_stays_200_and_fast(
    start_service, collector, state, says
) -> None:
    if state == "refused":
        url = f"http://127.0.0.1:{closed_port()}/"
    else:
        url = collector(ready=False, hang_s=10.0 if state == "hanging" else 0.0).url
    svc = await start_service(
        collector_health_url=url, health_probe_timeout_s=0.5, health_cache_s=0
    )
    began = time.monotonic()
    r = await svc.http.get(HEALTH)
    assert time.monotonic() - began < 3.0  # bounded by the probe timeout
    body = r.json()
    assert r.status_code == 200 and body["status"] == "degraded"
    assert says in body["degraded"]
    assert body["collector"]["ok"] is False
