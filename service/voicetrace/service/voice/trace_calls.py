"""What the voice bridge reports to its session's `SessionTrace`, callable without a WebSocket.

The bridge's two loops call these for every model event and every client audio frame and tool
outcome; `bench/tracer_replay.py` calls the very same functions to measure the tracing the
service adds. Model events go through the telemetry's shared mapping (`record_event`, the one
the drop-in instrumentor uses too), plus the turn audio the service keeps for Langfuse media
when capture and consent are on. Nothing here sends anything: the client protocol stays in the
bridge. Like `SessionTrace` itself, none of these raise.
"""

from __future__ import annotations

from voicetrace.service.voice import events as ev
from voicetrace.service.voice.tools import ToolOutcome, ToolRegistry
from voicetrace.telemetry import SessionTrace, TurnSummary
from voicetrace.telemetry.instrumentation.audio import is_voiced
from voicetrace.telemetry.instrumentation.record import record_event


def non_blocking_tools(tools: ToolRegistry) -> frozenset[str]:
    """Names of the NON_BLOCKING tools (their calls do not hold the turn open), as declared to
    the model at connect."""
    return frozenset(spec.name for spec in tools.specs() if spec.non_blocking)


def model_event(
    trace: SessionTrace, event: ev.ModelEvent, non_blocking: frozenset[str]
) -> TurnSummary | None:
    """Report one model event; the closed turn's summary for `TurnComplete`."""
    summary = record_event(trace, event, non_blocking)
    if type(event) is ev.AudioOut and trace.records_audio:
        trace.audio("output", event.data)
    return summary


def user_audio(trace: SessionTrace, frame: bytes, seconds: float) -> None:
    """One client PCM16 frame (16 kHz) on its way to the model: its duration and whether it is
    voiced (turn start, speech timing), and its bytes when the turn audio is kept."""
    trace.user_audio(seconds, is_voiced(frame))
    if trace.records_audio:
        trace.audio("input", frame)


def tool_outcome(trace: SessionTrace, outcome: ToolOutcome) -> None:
    """A tool call finished (ok or error), with how long the tool ran."""
    trace.tool_result(
        outcome.call_id, outcome.response, error=outcome.error, duration_s=outcome.duration_s
    )
