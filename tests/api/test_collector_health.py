"""`/api/observability/health` checks the collector's `health_check` extension when
`collector_health_url` is set: up → fine, 503 / refused / hanging → listed as degraded, health
still 200 and still fast."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.collector_health import CollectorHealth, closed_port

HEALTH = "/api/observability/health"


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


@pytest.mark.parametrize("body", [b'["x"]', b'{"status": 3}', b"<html>ok</html>"])
async def test_an_unexpected_health_body_never_breaks_the_endpoint(
    start_service, collector, body
) -> None:
    up = collector(body=body)
    svc = await start_service(collector_health_url=up.url, health_cache_s=0)
    r = await svc.http.get(HEALTH)
    assert r.status_code == 200
    assert r.json()["collector"]["detail"] == "HTTP 200"


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
