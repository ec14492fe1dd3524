"""Live model events → `SessionTrace` calls: the one place that says what each event means.

`record_event(trace, event, non_blocking)` is what the service's bridge and the drop-in
`GenAILiveInstrumentor` both call for every event of the model's stream, so the two produce the
same turns, generations, tools, barge-ins and connection events. It dispatches on the event's
exact type (one dict lookup, no isinstance chain: it runs for every audio chunk) and returns the
`TurnSummary` when the event closed a turn. `SessionTrace` methods never raise, so neither does
this; an unknown event type is ignored.

The user side (audio frames, typed text, activity markers, tool results) has no event type: an
app reports it where it sends it — the instrumentor from the SDK's send methods
(`instrumentation.genai_inputs`), the service from its client loop.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from voicetrace.telemetry.instrumentation import events as ev
from voicetrace.telemetry.records import TurnSummary, UsageSnapshot
from voicetrace.telemetry.session import SessionTrace

Handler = Callable[[SessionTrace, Any, Container[str]], TurnSummary | None]


def _audio(t: SessionTrace, e: ev.AudioOut, _nb: Container[str]) -> None:
    t.model_audio(len(e.data), e.sample_rate)


def _text(t: SessionTrace, e: ev.TextOut, _nb: Container[str]) -> None:
    t.model_text(e.text, thought=e.thought)


def _input_transcript(t: SessionTrace, e: ev.InputTranscript, _nb: Container[str]) -> None:
    t.input_transcript(e.text, e.finished)


def _output_transcript(t: SessionTrace, e: ev.OutputTranscript, _nb: Container[str]) -> None:
    t.output_transcript(e.text)


def _tool_call(t: SessionTrace, e: ev.ToolCall, nb: Container[str]) -> None:
    for call in e.calls:
        t.tool_call(call.id, call.name, call.args, non_blocking=call.name in nb)


def _cancelled(t: SessionTrace, e: ev.ToolCallCancellation, _nb: Container[str]) -> None:
    t.tool_cancelled(e.ids)


def _interrupted(t: SessionTrace, _e: ev.Interrupted, _nb: Container[str]) -> None:
    t.interrupted()


def _generation_complete(t: SessionTrace, _e: ev.GenerationComplete, _nb: Container[str]) -> None:
    t.generation_complete()


def _usage(t: SessionTrace, e: UsageSnapshot, _nb: Container[str]) -> None:
    t.usage(e)


def _turn_complete(t: SessionTrace, _e: ev.TurnComplete, _nb: Container[str]) -> TurnSummary | None:
    return t.turn_complete()


def _go_away(t: SessionTrace, e: ev.GoAway, _nb: Container[str]) -> None:
    t.go_away(e.time_left_s)


def _handle(t: SessionTrace, e: ev.ResumptionHandle, _nb: Container[str]) -> None:
    t.resumption_handle(e.handle)


def _reconnected(t: SessionTrace, e: ev.Reconnected, _nb: Container[str]) -> None:
    t.reconnected(e.reason, e.downtime_s, e.resumed)


def _model_error(t: SessionTrace, e: ev.ModelError, _nb: Container[str]) -> None:
    t.model_error(e.code, e.reason)


_HANDLERS: dict[type, Handler] = {
    ev.AudioOut: _audio,
    ev.TextOut: _text,
    ev.InputTranscript: _input_transcript,
    ev.OutputTranscript: _output_transcript,
    ev.ToolCall: _tool_call,
    ev.ToolCallCancellation: _cancelled,
    ev.Interrupted: _interrupted,
    ev.GenerationComplete: _generation_complete,
    UsageSnapshot: _usage,
    ev.TurnComplete: _turn_complete,
    ev.GoAway: _go_away,
    ev.ResumptionHandle: _handle,
    ev.Reconnected: _reconnected,
    ev.ModelError: _model_error,
}


def record_event(
    trace: SessionTrace, event: ev.ModelEvent, non_blocking: Container[str] = frozenset()
) -> TurnSummary | None:
    """Report one model event to `trace`; the closed turn's summary for `TurnComplete`.

    `non_blocking` holds the names of the session's NON_BLOCKING functions (their calls do not
    hold the turn open)."""
    handler = _HANDLERS.get(type(event))
    return handler(trace, event, non_blocking) if handler is not None else None
