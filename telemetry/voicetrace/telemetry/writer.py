"""`SessionWriter`: one session's spans and metrics, written on the emitter thread.

Everything here runs in `Emitter` jobs, never on the caller's thread, and in the order the
session queued it: a turn span is created before its chat and tools ask for its context, and
the root ends last. Each span is built in its own try block, so one failure (counted in
health) does not cost the turn's other spans or its metrics. Error strings arrive as reported
and are redacted here, where the time is cheap.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import UpDownCounter
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.metrics import ModelMetrics
from voicetrace.telemetry.prices import Cost
from voicetrace.telemetry.records import SessionSummary, TurnSummary
from voicetrace.telemetry.spans import SpanFactory
from voicetrace.telemetry.turns import ToolRecord, TurnRecord
from voicetrace.telemetry.usage import UsageBreakdown

ChatJob = tuple[UsageBreakdown | None, Cost | None, bool]  # usage, cost, usage came late


class SessionWriter:
    """Builds one session's spans (through `SpanFactory`) and records its metrics."""

    def __init__(
        self,
        spans: SpanFactory,
        metrics: ModelMetrics,
        sessions: UpDownCounter,
        health: TelemetryHealth,
        root: Span,
    ) -> None:
        self.spans, self.metrics, self.health, self.root = spans, metrics, health, root
        self._sessions = sessions
        valid = root is not INVALID_SPAN and root.get_span_context().is_valid
        self.root_ctx: Context | None = trace.set_span_in_context(root) if valid else None

    # -- jobs -----------------------------------------------------------------------------------
    def connect(
        self,
        start_ns: int,
        end_ns: int,
        resumed: bool,
        error: str | None,
        reconnect_reason: str | None = None,
    ) -> None:
        err = self.spans.redact_error(error) if error else None
        self.spans.connect(self.root_ctx, start_ns, end_ns, resumed, err, reconnect_reason)

    def turn_closed(self, s: TurnSummary, audio_in_s: float, audio_out_s: float) -> None:
        """A turn's phase/turn metrics and the session's audio since the last report."""
        phases = (s.user_speech_ms / 1e3, s.endpointing_ms / 1e3, s.response_ms / 1e3)
        self.metrics.turn((*phases, s.total_ms / 1e3), s.end_reason, s.interrupted)
        self.metrics.audio(audio_in_s, audio_out_s)

    def emit(
        self,
        t: TurnRecord,
        turn: bool,
        tools: tuple[tuple[ToolRecord, int], ...],
        chat: ChatJob | None,
    ) -> None:
        """What the session decided is due for `t`: its turn span, finished tools, generation."""
        if turn:
            try:
                t.ctx = trace.set_span_in_context(self.spans.turn(t, self.root_ctx))
                self.health.add("turns_emitted")
            except Exception as exc:
                self.health.error("emit", exc)
            self._child(t, self.spans.turn_events, t, t.ctx)
        for tool, end_ns in tools:
            if tool.status in ("ok", "error"):
                self.metrics.tool(tool.name, tool.status)
            self._child(t, self.spans.tool, tool, t.ctx, end_ns)
        if chat is not None:
            usage, cost, late = chat
            self._child(t, self.spans.chat, t, t.ctx, usage, cost, late)
            if usage is not None:
                self._chat_metrics(t, usage, cost)

    def perceived(self, seconds: float) -> None:
        self.metrics.perceived(seconds)

    def event(self, name: str, attrs: dict[str, Any], at_ns: int) -> None:
        """A session-level event: a span event on the root (for every backend) and, for the
        ones that matter in Langfuse's timeline, a zero-length EVENT observation under it."""
        self.root.add_event(name, attrs, timestamp=at_ns)
        if name in k.OBSERVED_EVENTS and self.root_ctx is not None:
            try:
                self.spans.event(name, attrs, at_ns, self.root_ctx)
            except Exception as exc:
                self.health.error("emit", exc)

    def model_error(self, code: int | None, reason: str, at_ns: int) -> None:
        attrs = {
            "code": code if code is not None else -1,
            "reason": self.spans.redact_error(reason),
        }
        self.event(k.EV_MODEL_ERROR, attrs, at_ns)

    def budget(self, paused: bool, attrs: dict[str, Any], at_ns: int) -> None:
        """A budget warning (a limit's warn ratio was crossed) or pause (a limit was reached):
        `attrs` are plain numbers/strings such as `limit`, `used`, `ratio`, `cost_usd`."""
        clean = {key: v for key, v in attrs.items() if isinstance(v, str | bool | int | float)}
        self.event(k.EV_BUDGET_PAUSED if paused else k.EV_BUDGET_WARNING, clean, at_ns)

    def close(self, s: SessionSummary, error: str | None, end_ns: int) -> None:
        """End the root with the session's totals; it is the last job of its session."""
        try:
            if s.end_reason in k.ERROR_END_REASONS:
                error = self.spans.redact_error(error) if error else s.end_reason
            else:
                error = None
            if self.root is not INVALID_SPAN:
                try:
                    attrs = SpanFactory.root_end_attributes(s, error)
                    # Content (from the turns, so only with capture + consent): Langfuse's
                    # trace list shows these as the session's input and output.
                    if self.spans.trace_input is not None:
                        attrs[k.LF_TRACE_INPUT] = self.spans.trace_input[1]
                    if self.spans.trace_output is not None:
                        attrs[k.LF_TRACE_OUTPUT] = self.spans.trace_output[1]
                    self.root.set_attributes(attrs)
                    if error:
                        self.root.set_status(Status(StatusCode.ERROR, error))
                finally:
                    self.root.end(end_time=end_ns)
        finally:
            self._sessions.add(-1, {k.PROVIDER_NAME: self.spans.info.provider})

    # -- helpers --------------------------------------------------------------------------------
    def _child(self, t: TurnRecord, build: Any, *args: Any) -> None:
        if t.ctx is None:  # its turn span was dropped or failed: never orphan a child
            self.health.add("emit_dropped")
            return
        try:
            build(*args)
        except Exception as exc:
            self.health.error("emit", exc)

    def _chat_metrics(self, t: TurnRecord, usage: UsageBreakdown, cost: Cost | None) -> None:
        _, t1, _, t3 = t.timeline()
        ttfc = None if t.first_output_ns is None else max(t.first_output_ns - t1, 0) / 1e9
        heard, _ = t.heard()
        self.metrics.chat(
            usage.input_tokens,
            usage.output_tokens,
            usage.by_modality(),
            (t3 - t1) / 1e9,
            ttfc,
            float(cost.total) if cost is not None else None,
            max(t.audio_out_ms - heard, 0.0) / 1000.0,
        )
