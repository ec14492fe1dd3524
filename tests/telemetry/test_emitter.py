"""The emitter thread: spans are built off the caller's thread, in order, bounded, fail-open."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from voicetrace.telemetry import PriceTable, SessionTrace, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.setup import configure_providers

from tests.telemetry.conftest import session_info


class Gate(SpanProcessor):
    """Records which thread started each span and the order spans ended; can hold the span
    pipeline shut (a stuck processor or exporter) until `release()` — for every span but the
    root, which is started on the caller's thread by design."""

    def __init__(self, closed: bool = False) -> None:
        self.started_on: dict[str, set[int]] = {}
        self.ended: list[ReadableSpan] = []
        self._open = threading.Event()
        if not closed:
            self._open.set()

    def release(self) -> None:
        self._open.set()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started_on.setdefault(span.name.split()[0], set()).add(threading.get_ident())
        if span.parent is not None:
            self._open.wait(5.0)  # bounded, so a failing test cannot hang the run

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


@pytest.fixture
def gated() -> Iterator[Any]:
    made: list[tuple[Gate, VoiceTelemetry]] = []

    def make(closed: bool = False, **options: Any) -> tuple[Gate, VoiceTelemetry]:
        gate = Gate(closed)
        provider = TracerProvider()
        provider.add_span_processor(gate)
        options.setdefault("pricing", PriceTable.load(None))
        tel = VoiceTelemetry(provider, NoOpMeterProvider(), owns_providers=True, **options)
        made.append((gate, tel))
        return gate, tel

    yield make
    for gate, tel in made:
        gate.release()
        tel.shutdown(2.0)


def _turn(s: SessionTrace, n: int) -> None:
    s.user_text(f"question {n}")
    s.tool_call(f"c{n}", "search", {"q": n})
    s.tool_result(f"c{n}", {"ok": True})
    s.model_audio(4800)
    s.usage(UsageSnapshot(prompt=100, response=10))
    s.turn_complete()


def _emitter_threads() -> int:
    return sum(t.name == "voicetrace-emitter" for t in threading.enumerate())


def _wait_for_emitter_threads(n: int) -> int:
    deadline = time.monotonic() + 2.0
    while _emitter_threads() > n and time.monotonic() < deadline:
        time.sleep(0.01)
    return _emitter_threads()


def test_only_the_root_span_is_started_on_the_callers_thread(gated) -> None:
    gate, tel = gated()
    s = tel.start_session(session_info())
    s.connect_started()
    s.connect_finished()
    _turn(s, 1)
    s.end()
    assert tel.force_flush(2.0)
    caller = threading.get_ident()
    assert gate.started_on.pop(k.SPAN_SESSION) == {caller}
    assert set(gate.started_on) == {"model.connect", "invoke_agent", "execute_tool", "chat"}
    for name, threads in gate.started_on.items():
        assert caller not in threads, name


def test_a_stuck_span_pipeline_never_blocks_the_caller(gated) -> None:
    gate, tel = gated(closed=True)
    s = tel.start_session(session_info())
    t0 = time.perf_counter()
    for n in range(20):
        _turn(s, n)
    summary = s.end()
    assert time.perf_counter() - t0 < 0.5  # the emitter waits at the gate, the caller never
    assert summary is not None and summary.turns == 20
    assert summary.input_tokens == 20 * 100  # totals are the caller's, not the spans'
    assert gate.ended == []
    gate.release()
    assert tel.force_flush(3.0)
    assert len([sp for sp in gate.ended if sp.name.startswith("chat")]) == 20


def test_a_full_emitter_queue_drops_counts_and_never_orphans_a_span(gated) -> None:
    gate, tel = gated(closed=True, max_emit_queue=3)
    s = tel.start_session(session_info())
    for n in range(30):
        _turn(s, n)
    s.end()
    dropped = tel.health()["emit_dropped"]
    assert dropped > 0
    gate.release()
    assert tel.force_flush(3.0)
    spans = {sp.context.span_id: sp for sp in gate.ended}
    root = next(sp for sp in gate.ended if sp.name == k.SPAN_SESSION)
    assert root.attributes[k.SESSION_TURNS] == 30  # the root end is never dropped
    for sp in gate.ended:
        if sp is not root:
            assert sp.parent is not None and sp.parent.span_id in spans, sp.name
    assert len([sp for sp in gate.ended if sp.name.startswith("invoke_agent")]) < 30


def test_the_root_ends_after_every_span_of_its_session(gated) -> None:
    gate, tel = gated()
    s = tel.start_session(session_info())
    _turn(s, 1)
    s.user_text("unfinished")
    s.tool_call("c9", "slow", {})
    s.end("client_disconnect")
    assert tel.force_flush(2.0)
    assert [sp.name for sp in gate.ended][-1] == k.SPAN_SESSION
    assert len(gate.ended) == 7  # root, 2 turns, 2 chats, 2 tools (one abandoned)


def test_force_flush_and_shutdown_are_bounded_while_the_emitter_is_stuck(gated) -> None:
    before = _emitter_threads()
    gate, tel = gated(closed=True)
    s = tel.start_session(session_info())
    _turn(s, 1)
    t0 = time.perf_counter()
    assert tel.force_flush(0.2) is False
    assert time.perf_counter() - t0 < 0.5
    t0 = time.perf_counter()
    tel.shutdown(0.3)
    assert time.perf_counter() - t0 < 0.8
    gate.release()
    assert _wait_for_emitter_threads(before) == before  # unstuck, it finishes and exits


def test_shutdown_ends_the_emitter_thread_after_building_what_was_queued(gated) -> None:
    before = _emitter_threads()
    gate, tel = gated()
    s = tel.start_session(session_info())
    _turn(s, 1)
    assert _emitter_threads() == before + 1
    tel.shutdown(2.0)
    assert _emitter_threads() == before
    assert s.ended
    assert {sp.name.split()[0] for sp in gate.ended} == {
        k.SPAN_SESSION,
        "invoke_agent",
        "execute_tool",
        "chat",
    }


def test_a_telemetry_dropped_without_shutdown_stops_its_thread() -> None:
    before = _emitter_threads()
    tel = VoiceTelemetry(TracerProvider(), NoOpMeterProvider())
    s = tel.start_session(session_info())
    _turn(s, 1)
    s.end()
    assert tel.force_flush(2.0)
    assert _emitter_threads() == before + 1
    del tel, s
    gc.collect()
    assert _wait_for_emitter_threads(before) == before


def test_metrics_are_recorded_by_the_emitter_and_visible_after_flush() -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    tel = VoiceTelemetry(TracerProvider(), meters, pricing=PriceTable.load(None))
    s = tel.start_session(session_info())
    for n in range(3):
        _turn(s, n)
    s.end()
    assert tel.force_flush(2.0)
    points = {
        m.name: m.data.data_points
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert sum(p.value for p in points["voice.turns"]) == 3
    assert sum(p.value for p in points["voice.tool.calls"]) == 3
    (usage_in,) = [
        p for p in points["gen_ai.client.token.usage"] if p.attributes[k.TOKEN_TYPE] == "input"
    ]
    assert usage_in.count == 3 and usage_in.sum == 300
    tel.shutdown(1.0)
    meters.shutdown()


def test_no_metric_reader_means_no_sdk_meter_provider_to_pay_for() -> None:
    bare = configure_providers(
        env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    )
    assert isinstance(bare.meter_provider, NoOpMeterProvider)
    read = configure_providers(
        env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
        metric_readers=[InMemoryMetricReader()],
    )
    assert isinstance(read.meter_provider, MeterProvider)
    read.meter_provider.shutdown()


def _wakeups(native_id: int) -> int:
    """How often a thread of this process went to sleep and was woken (Linux)."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_an_idle_emitter_stops_polling_and_still_runs_the_next_job_at_once() -> None:
    from voicetrace.telemetry.emitter import IDLE_POLLS, POLL_S, Emitter
    from voicetrace.telemetry.health import TelemetryHealth

    emitter = Emitter(TelemetryHealth())
    ran, worker = threading.Event(), []

    def job() -> None:
        worker.append(threading.get_native_id())
        ran.set()

    assert emitter.submit(job) and ran.wait(2)
    # It polls IDLE_POLLS times before it sleeps; on a loaded machine that takes longer than
    # IDLE_POLLS * POLL_S, so wait (bounded) until its wake-ups stop changing: asleep now.
    before, deadline = _wakeups(worker[0]), time.monotonic() + 10.0
    while True:
        time.sleep(POLL_S * (IDLE_POLLS + 3))
        now = _wakeups(worker[0])
        if now == before:
            break
        assert time.monotonic() < deadline, "the idle emitter never stopped polling"
        before = now
    time.sleep(POLL_S * 15)  # a polling worker would wake ~15 times here
    assert _wakeups(worker[0]) - before <= 1
    ran.clear()
    assert emitter.submit(job)
    assert ran.wait(POLL_S * 5), "a job submitted to a sleeping worker must wake it"
    assert emitter.stop(2)
