"""Closing the trace of a session whose process died before its root span ended.

A SIGKILLed (or OOM-killed) service never ends its `voice_session` root: Langfuse would show a
trace of turns without its root observation, name or totals. The service stores each session's
root context when it starts (`SessionTrace.root_context`); whoever later ends such a session
(the restarted process, or another replica's lease sweeper) calls
`VoiceTelemetry.close_lost_session`, which exports a root span with the *same* trace and span id
— so the turns that were exported before the crash hang under it again — carrying the totals of
the turns that were settled and recorded, and `voice.session.recovered=true`.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NoOpTracer, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.records import SessionInfo, SessionSummary
from voicetrace.telemetry.spans import SpanFactory

SCOPE = InstrumentationScope("voicetrace.telemetry", "0.1.0")
RECOVERED = "voice.session.recovered"


@dataclass(frozen=True, slots=True)
class RootContext:
    """A session's root span, as stored for recovery (hex ids as OTLP and Langfuse show them)."""

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    sampled: bool
    start_ns: int

    def __post_init__(self) -> None:
        if len(self.trace_id) != 32 or len(self.span_id) != 16:
            raise ValueError("trace_id must be 32 hex digits and span_id 16")
        int(self.trace_id, 16), int(self.span_id, 16)


def lost_root_span(
    info: SessionInfo,
    root: RootContext,
    summary: SessionSummary,
    end_ns: int,
    resource: Resource,
    health: TelemetryHealth,
) -> ReadableSpan:
    """The root span the dead process never ended, rebuilt from what was stored."""
    factory = SpanFactory(NoOpTracer(), info, health, None, None)  # no content: none survived
    attributes = {
        **factory.root_attributes(),
        **SpanFactory.root_end_attributes(summary, None),
        RECOVERED: True,
        k.trace_metadata("recovered"): True,
    }
    context = SpanContext(
        int(root.trace_id, 16),
        int(root.span_id, 16),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if root.sampled else TraceFlags.DEFAULT),
    )
    return ReadableSpan(
        name=k.SPAN_SESSION,
        context=context,
        parent=None,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        instrumentation_scope=SCOPE,
        status=Status(StatusCode.UNSET),
        start_time=min(root.start_ns, end_ns),
        end_time=end_ns,
    )
