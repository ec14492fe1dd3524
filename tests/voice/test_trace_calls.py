"""The bridge's telemetry calls (`voice.trace_calls`), driven without a socket as the replay
bench drives them: real `VoiceTelemetry`, real OTel SDK, spans read after a flush."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from voicetrace.service.voice import events as ev
from voicetrace.service.voice import trace_calls
from voicetrace.service.voice.audio import speech_like
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.telemetry import PriceTable, SessionInfo, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.instrumentation.audio import is_voiced as instrumentor_is_voiced

from tests.instrumentation.test_audio_energy import edge_frame, edge_frames


@pytest.fixture
def traced() -> Iterator[tuple[VoiceTelemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tel = VoiceTelemetry(provider, NoOpMeterProvider(), pricing=PriceTable.load(None))
    yield tel, exporter
    tel.shutdown(1.0)


def registry() -> ToolRegistry:
    tools = ToolRegistry()

    @tools.register(description="Look a word up.")
    async def lookup(word: str) -> str:
        return word.upper()

    @tools.register(description="Remind the user later.", non_blocking=True)
    async def remind(what: str) -> str:
        return f"noted: {what}"

    return tools


def test_only_the_registry_s_non_blocking_tools_are_non_blocking() -> None:
    assert trace_calls.non_blocking_tools(registry()) == {"remind"}


async def test_tool_calls_and_outcomes_reach_the_tool_spans_as_the_registry_ran_them(
    traced: tuple[VoiceTelemetry, InMemorySpanExporter],
) -> None:
    tel, exporter = traced
    tools = registry()
    nb = trace_calls.non_blocking_tools(tools)
    trace = tel.start_session(SessionInfo(session_id="s1", user_id="u1", model="gemini-3.8-live"))
    trace.user_text("look up cat and remind me")
    calls = (ev.FunctionCall("c1", "lookup", {"word": "cat"}), ev.FunctionCall("c2", "remind"))
    assert trace_calls.model_event(trace, ev.ToolCall(calls), nb) is None
    for call in calls:  # "remind" lacks its argument: an error outcome
        trace_calls.tool_outcome(trace, await tools.run(call))
    trace_calls.model_event(trace, ev.AudioOut(bytes(4800)), nb)
    trace_calls.model_event(trace, UsageSnapshot(prompt=20, response=10), nb)
    summary = trace_calls.model_event(trace, ev.TurnComplete(), nb)
    assert summary is not None and summary.number == 1
    trace.end()
    assert tel.force_flush(2.0)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    looked = spans["execute_tool lookup"].attributes
    reminded = spans["execute_tool remind"].attributes
    assert looked is not None and reminded is not None
    assert (looked[k.TOOL_NON_BLOCKING], reminded[k.TOOL_NON_BLOCKING]) == (False, True)
    assert (looked[k.TOOL_STATUS], reminded[k.TOOL_STATUS]) == ("ok", "error")
    assert isinstance(looked[k.TOOL_DURATION_MS], float)


def test_a_voiced_client_frame_opens_a_turn_and_silence_does_not(
    traced: tuple[VoiceTelemetry, InMemorySpanExporter],
) -> None:
    tel, _ = traced
    trace = tel.start_session(SessionInfo(session_id="s2", user_id="u1", model="gemini-3.8-live"))
    trace_calls.user_audio(trace, bytes(640), 0.02)
    assert trace.current_turn is None
    trace_calls.user_audio(trace, speech_like(0.02), 0.02)
    assert trace.current_turn == 1
    trace.end()


def test_the_service_opens_a_turn_on_exactly_the_frames_the_instrumentor_finds_voiced(
    traced: tuple[VoiceTelemetry, InMemorySpanExporter],
) -> None:
    # The same audio must start a turn on the same frame whether the service or the drop-in
    # instrumentor traces it: one sample of 5000 at index 5 of a 20 ms frame is voiced to both.
    tel, _ = traced
    cases = list(edge_frames())
    assert (edge_frame(5000, 5), True) in cases
    for n, (frame, voiced) in enumerate(cases):
        trace = tel.start_session(
            SessionInfo(session_id=f"e{n}", user_id="u1", model="gemini-3.8-live")
        )
        trace_calls.user_audio(trace, frame, 0.02)
        assert instrumentor_is_voiced(frame) is voiced, n
        assert (trace.current_turn == 1) is voiced, n
        trace.end()
