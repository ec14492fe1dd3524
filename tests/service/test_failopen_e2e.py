"""Telemetry fails open, end to end: with the OTLP backend (over HTTP or gRPC) refusing
connections, hanging or answering 500 (gRPC: INTERNAL), voice turns through the real service
are as fast as with a healthy backend, sessions end promptly, and the lost spans are counted on
`/health`."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from voicetrace.service.client import VoiceClient

from tests.conftest import RunningService
from tests.otlp_receiver import Mode
from tests.service.otlp_helpers import Exported, exporting_telemetry

TURNS = 5
EXPORT_TIMEOUT_S = 1.0
# Longer than the 2 s the end may take: a flush before `session_ended` would show.
FLUSH_TIMEOUT_S = 3.0


@pytest.fixture
def exported() -> Iterator[Callable[..., Exported]]:
    """Receiver + telemetry factory; torn down after the services (requested before them)."""
    with ExitStack() as stack:
        yield lambda **kw: stack.enter_context(exporting_telemetry(**kw))


@dataclass
class Run:
    """One session of `TURNS` typed turns, measured by the client."""

    svc: RunningService
    exp: Exported
    session_id: str
    turn_ms: list[float]
    end_ms: float
    ended: dict[str, Any]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.turn_ms)

    async def health(self) -> dict[str, Any]:
        response = await self.svc.http.get("/health")
        assert response.status_code == 200
        return response.json()["telemetry"]


@pytest.fixture
def run_session(exported: Callable[..., Exported], start_service: Any) -> Callable[..., Any]:
    async def run(mode: Mode, protocol: str = "http/protobuf") -> Run:
        exp = exported(
            mode=mode, export_timeout_s=EXPORT_TIMEOUT_S, shutdown_s=1.0, protocol=protocol
        )
        # flush_timeout_s bounds the bridge's own end-of-session flush (off the event loop).
        svc = await start_service(telemetry=exp.telemetry, flush_timeout_s=FLUSH_TIMEOUT_S)
        created = await svc.create_session("alice")
        turn_ms: list[float] = []
        async with VoiceClient.connect(svc.ws_url(created["id"]), svc.token("alice")) as client:
            await client.wait_for("session_started")
            for n in range(1, TURNS + 1):
                sent = time.monotonic()
                await client.send("text", text=f"Turn {n}: what can you do?")
                done = await client.wait_for("turn_complete", count=n)
                turn_ms.append((time.monotonic() - sent) * 1000)
                assert (done["number"], done["end_reason"]) == (n, "completed")
            sent = time.monotonic()
            await client.send("end")
            ended = await client.wait_for("session_ended", timeout=5)
            end_ms = (time.monotonic() - sent) * 1000
        return Run(svc, exp, created["id"], turn_ms, end_ms, ended)

    return run


async def eventually(
    read: Callable[[], Awaitable[dict[str, Any]]],
    check: Callable[[dict[str, Any]], bool],
    timeout_s: float,
) -> dict[str, Any]:
    """Re-read (async) until `check` holds: export failures are counted when the exporter
    gives up, a moment after the session. Returns the last value either way."""
    deadline = time.monotonic() + timeout_s
    value = await read()
    while not check(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        value = await read()
    return value


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("mode", ["refuse", "hang", "500"])
async def test_a_failing_backend_neither_slows_turns_nor_delays_the_end_and_is_counted(
    run_session: Callable[..., Any], mode: Mode, protocol: str
) -> None:
    baseline = await run_session("ok", protocol)
    failing = await run_session(mode, protocol)

    # The voice path does not wait for telemetry: the same turns take the same time.
    allowed = baseline.median_ms + max(50.0, 0.5 * baseline.median_ms)
    assert failing.median_ms <= allowed, (mode, failing.turn_ms, baseline.turn_ms)
    # The session ends normally and promptly: the end-of-session flush is bounded and runs
    # after `session_ended` is sent.
    assert failing.ended["reason"] == "completed" and failing.ended["summary"]["turns"] == TURNS
    assert failing.end_ms < 2000, failing.end_ms

    # Spans were still recorded in full (processors see everything)…
    recorded = failing.exp.recorded(failing.session_id)
    assert len(recorded) == 1 + 1 + 2 * TURNS  # root, connect, (turn + chat) per turn
    # …the backend was really tried (or, refused, could not be)…
    if mode != "refuse":
        assert failing.exp.receiver.hits >= 1
    assert failing.exp.receiver.spans == []  # nothing was accepted
    # …and what was lost is visible on /health.
    health = await eventually(failing.health, lambda h: h["export_failures"] >= 1, 3.0)
    assert health["export_failures"] >= 1, health
    assert health["spans_dropped"] >= 1 and health["spans_exported"] == 0, health
    assert health["tracer_errors"] == 0, health

    base_health = await baseline.health()
    assert base_health["export_failures"] == 0 and base_health["spans_dropped"] == 0
    assert len(baseline.exp.spans(baseline.session_id)) == len(
        baseline.exp.recorded(baseline.session_id)
    )


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("mode", ["refuse", "500"])
async def test_every_span_a_failing_backend_lost_is_counted_as_dropped(
    run_session: Callable[..., Any], mode: Mode, protocol: str
) -> None:
    failing = await run_session(mode, protocol)
    assert failing.exp.telemetry.force_flush(3.0)  # failures are fast: the flush completes
    health = await failing.health()
    assert health["spans_exported"] == 0 and health["queue_size"] == 0
    # Nothing vanishes silently: every span the tracer built was either exported or counted.
    assert health["spans_dropped"] == health["spans_started"] == len(failing.exp.recorded()), health
