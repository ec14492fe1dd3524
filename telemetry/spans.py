"""Build and emit one session's spans from finished records.

Every span is created with all its attributes and explicit start/end timestamps, then ended
at once: cheaper than `set_attribute` calls, and no span can be left open. This is also the one
mapping layer from our records to attribute keys (GenAI semconv + Langfuse + `voice.*`), so a
future OTel voice convention is adopted here without touching the recording code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, Tracer

from telemetry import keys as k
from telemetry.content import Redactor
from telemetry.health import TelemetryHealth
from telemetry.prices import Cost, PriceTable
from telemetry.records import SessionInfo
from telemetry.turns import ToolRecord, TurnRecord
from telemetry.usage import UsageBreakdown

Attrs = dict[str, Any]
Event = tuple[str, Mapping[str, Any], int]

# Turn end reasons that are not a clean ending for the *turn* (the session may be fine).
_WARN_REASONS = frozenset({"tool_error", "client_disconnect", "server_shutdown", "budget_paused"})
_FINISH = {"completed": "stop", "tool_error": "stop", "interrupted": "interrupted"}


def iso(ns: int) -> str:
    """Epoch ns → ISO 8601 UTC (what Langfuse's completion_start_time expects)."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="microseconds")


def level_for(end_reason: str) -> str:
    if end_reason in k.ERROR_END_REASONS:
        return k.LEVEL_ERROR
    if end_reason in _WARN_REASONS:
        return k.LEVEL_WARNING
    return k.LEVEL_DEFAULT


class SpanFactory:
    """Emits the spans of one session; knows its ids, content policy and prices."""

    def __init__(
        self,
        tracer: Tracer,
        info: SessionInfo,
        health: TelemetryHealth,
        prices: PriceTable | None,
        redactor: Redactor | None,
    ) -> None:
        self.tracer, self.info, self.health = tracer, info, health
        self.prices, self.redact = prices, redactor  # redactor None ⇒ no content, ever
        # Rule 1: ids on every span (Langfuse filters on them; a lost root orphans nothing).
        self.ids: Attrs = {
            k.SESSION_ID: info.session_id,
            k.USER_ID: info.user_id,
            k.CONVERSATION_ID: info.session_id,
        }
        if info.environment:
            self.ids[k.LF_ENVIRONMENT] = info.environment
        self.server: Attrs = {}
        if info.server_address:
            self.server[k.SERVER_ADDRESS] = info.server_address
        if info.server_port:
            self.server[k.SERVER_PORT] = int(info.server_port)

    # -- primitives ---------------------------------------------------------------------------
    def emit(
        self,
        name: str,
        kind: SpanKind,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        attrs: Attrs,
        events: Iterable[Event] = (),
        error: str | None = None,
    ) -> SpanContext:
        ctx = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        span = self.tracer.start_span(
            name, context=ctx, kind=kind, attributes=attrs, start_time=start_ns
        )
        self.health.add("spans_started")
        try:
            for ev_name, ev_attrs, ts in events:
                span.add_event(ev_name, ev_attrs, timestamp=ts)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
        finally:
            span.end(end_time=max(end_ns, start_ns))
        return span.get_span_context()

    def texts(self, t: TurnRecord) -> tuple[str | None, str | None]:
        """The turn's user and model text, redacted once for both of its spans."""
        if t.redacted is None:
            t.redacted = (
                self.content("".join(t.user_text).strip()),
                self.content("".join(t.output_text).strip()),
            )
        return t.redacted

    def content(self, text: str) -> str | None:
        return self.redact(text) if self.redact is not None and text else None

    # -- session root ---------------------------------------------------------------------------
    def root_attributes(self) -> Attrs:
        info = self.info
        attrs: Attrs = {
            **self.ids,
            k.LF_OBSERVATION_TYPE: k.OBS_SPAN,
            k.LF_TRACE_NAME: k.SPAN_SESSION,
            k.AGENT_NAME: info.agent_name,
            k.PROVIDER_NAME: info.provider,
            k.SESSION_RECORDING_CONSENT: bool(info.recording_consent),
            k.trace_metadata("model"): info.model,
            k.trace_metadata("agent"): info.agent_name,
            **self.server,
        }
        if info.tags:
            attrs[k.LF_TRACE_TAGS] = tuple(str(t) for t in info.tags)
        if info.system_prompt and (prompt := self.content(info.system_prompt)):
            attrs[k.SYSTEM_INSTRUCTIONS] = json.dumps(
                [{"type": "text", "content": prompt}], ensure_ascii=False
            )
        return attrs

    # -- connect ------------------------------------------------------------------------------
    def connect(
        self,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        resumed: bool,
        error: str | None,
        reconnect_reason: str | None = None,
    ) -> None:
        # No model attribute here, and the type set explicitly: Langfuse would otherwise turn a
        # span with a model attribute into a GENERATION (peers' inflated generation counts).
        attrs: Attrs = {
            **self.ids,
            **self.server,
            k.LF_OBSERVATION_TYPE: k.OBS_SPAN,
            k.PROVIDER_NAME: self.info.provider,
            k.CONNECT_RESUMED: resumed,
            k.LF_LEVEL: k.LEVEL_ERROR if error else k.LEVEL_DEFAULT,
        }
        if reconnect_reason:
            attrs[k.CONNECT_RECONNECT_REASON] = reconnect_reason
        if error:
            attrs[k.ERROR_TYPE] = "connect_failed"
            attrs[k.LF_STATUS_MESSAGE] = error
        self.emit(k.SPAN_CONNECT, SpanKind.INTERNAL, parent, start_ns, end_ns, attrs, error=error)

    # -- turn -----------------------------------------------------------------------------------
    def turn(self, t: TurnRecord, parent: SpanContext | None) -> SpanContext:
        reason = t.end_reason or "completed"
        phases = t.phases_ms()
        ttfa = t.ttfa_ms()
        heard, source = t.heard()
        level = level_for(reason)
        attrs: Attrs = {
            **self.ids,
            k.LF_OBSERVATION_TYPE: k.OBS_AGENT,
            k.OPERATION_NAME: k.OP_INVOKE_AGENT,
            k.AGENT_NAME: self.info.agent_name,
            k.PROVIDER_NAME: self.info.provider,
            k.TURN_NUMBER: t.number,
            k.TURN_END_REASON: reason,
            k.TURN_TRIGGER: t.trigger,
            k.TURN_INTERRUPTED: t.interrupted,
            k.TURN_USER_SPEECH_MS: phases["user_speech"],
            k.TURN_ENDPOINTING_MS: phases["endpointing"],
            k.TURN_RESPONSE_MS: phases["response"],
            k.TURN_TOTAL_MS: phases["total"],
            k.TURN_TOOL_MS: t.tool_ms(),
            k.AUDIO_IN_MS: t.audio_in_s * 1000.0,
            k.AUDIO_OUT_MS: t.audio_out_ms,
            k.AUDIO_HEARD_MS: heard,
            k.AUDIO_HEARD_SOURCE: source,
            k.LF_LEVEL: level,
            # Filterable KPIs in Langfuse (metadata.attributes.* is not filterable).
            k.obs_metadata("turn"): t.number,
            k.obs_metadata("end_reason"): reason,
            k.obs_metadata("interrupted"): t.interrupted,
            k.obs_metadata("total_ms"): round(phases["total"], 1),
        }
        if ttfa is not None:
            attrs[k.TURN_TTFA_MS] = ttfa
            attrs[k.obs_metadata("ttfa_ms")] = round(ttfa, 1)
        perceived = t.perceived_latency_ms()
        if perceived is not None:
            attrs[k.TURN_PERCEIVED_LATENCY_MS] = perceived
            attrs[k.obs_metadata("perceived_latency_ms")] = round(perceived, 1)
        if self.redact is not None:
            said, answer = self.texts(t)
            if said:
                attrs[k.LF_INPUT] = said
            if answer:
                attrs[k.LF_OUTPUT] = answer
            if thoughts := self.content("".join(t.thoughts).strip()):
                attrs[k.TURN_THOUGHTS] = thoughts
        error = None
        if level == k.LEVEL_ERROR:
            error = reason
            attrs[k.ERROR_TYPE] = reason
            attrs[k.LF_STATUS_MESSAGE] = reason
        t0, _, _, t3 = t.timeline()
        end = max(t3, t.close_ns or t3)
        return self.emit(
            f"{k.OP_INVOKE_AGENT} {self.info.agent_name}",
            SpanKind.INTERNAL,
            parent,
            t0,
            end,
            attrs,
            t.events,
            error,
        )

    # -- generation -----------------------------------------------------------------------------
    def chat(self, t: TurnRecord, usage: UsageBreakdown | None, cost: Cost | None) -> None:
        reason = t.end_reason or "completed"
        _, t1, _, t3 = t.timeline()
        model = self.info.model
        attrs: Attrs = {
            **self.ids,
            **self.server,
            k.LF_OBSERVATION_TYPE: k.OBS_GENERATION,
            k.OPERATION_NAME: k.OP_CHAT,
            k.PROVIDER_NAME: self.info.provider,
            k.REQUEST_MODEL: model,
            k.RESPONSE_MODEL: model,
            k.OUTPUT_TYPE: k.OUTPUT_SPEECH if t.audio_out_ms > 0 else k.OUTPUT_TEXT,
            k.RESPONSE_FINISH_REASONS: (_FINISH.get(reason, reason),),
            k.TURN_NUMBER: t.number,
            k.AUDIO_OUT_MS: t.audio_out_ms,
            k.obs_metadata("turn"): t.number,
        }
        if t.first_output_ns is not None:
            attrs[k.LF_COMPLETION_START_TIME] = iso(t.first_output_ns)
            attrs[k.RESPONSE_TIME_TO_FIRST_CHUNK] = max(t.first_output_ns - t1, 0) / 1e9
        heard, source = t.heard()
        attrs[k.AUDIO_HEARD_MS] = heard
        attrs[k.AUDIO_HEARD_SOURCE] = source
        unheard_ms = max(t.audio_out_ms - heard, 0.0)
        attrs[k.AUDIO_UNHEARD_MS] = unheard_ms
        level, status_message = k.LEVEL_DEFAULT, None
        if usage is None:
            attrs[k.USAGE_MISSING] = True
            level, status_message = k.LEVEL_WARNING, "usage not received for this turn"
        else:
            attrs.update(usage.attributes())
            if t.usage_late:
                attrs[k.USAGE_LATE] = True
        if cost is not None:
            attrs[k.LF_COST_DETAILS] = cost.details_json()
            attrs[k.COST_USD] = float(cost.total)
            attrs[k.COST_USD_DECIMAL] = str(cost.total)
            attrs[k.COST_PRICE_KEY] = cost.model
            attrs[k.obs_metadata("cost_usd")] = float(cost.total)
            unheard_cost = self.unheard_cost(usage, t.audio_out_ms, unheard_ms)
            if unheard_cost is not None:
                attrs[k.AUDIO_UNHEARD_COST_USD] = float(unheard_cost)
                attrs[k.obs_metadata("unheard_cost_usd")] = float(unheard_cost)
        if reason in k.ERROR_END_REASONS:
            level, status_message = k.LEVEL_ERROR, reason
            attrs[k.ERROR_TYPE] = reason
        attrs[k.LF_LEVEL] = level
        if status_message:
            attrs[k.LF_STATUS_MESSAGE] = status_message
        if self.redact is not None:
            said, answer = self.texts(t)
            if said:
                attrs[k.INPUT_MESSAGES] = _messages("user", said)
            if answer:
                attrs[k.OUTPUT_MESSAGES] = _messages(
                    "assistant", answer, _FINISH.get(reason, reason)
                )
        self.emit(
            f"{k.OP_CHAT} {model}",
            SpanKind.CLIENT,
            t.span_context,
            t1,
            t3,
            attrs,
            error=reason if level == k.LEVEL_ERROR else None,
        )

    def unheard_cost(
        self, usage: UsageBreakdown | None, out_ms: float, unheard_ms: float
    ) -> Decimal | None:
        """Cost of the audio generated but never heard: its share of the output audio tokens."""
        if usage is None or self.prices is None or out_ms <= 0 or unheard_ms <= 0:
            return None
        share = Decimal(str(unheard_ms)) / Decimal(str(out_ms))
        return self.prices.audio_output_cost(self.info.model, usage.output["audio"] * share)

    # -- tools ----------------------------------------------------------------------------------
    def tool(self, tool: ToolRecord, end_ns: int) -> None:
        status = tool.status or "abandoned"
        attrs: Attrs = {
            **self.ids,
            k.LF_OBSERVATION_TYPE: k.OBS_TOOL,
            k.OPERATION_NAME: k.OP_EXECUTE_TOOL,
            k.TOOL_NAME: tool.name,
            k.TOOL_CALL_ID: tool.call_id,
            k.TOOL_TYPE: "function",
            k.TOOL_STATUS: status,
            k.TOOL_NON_BLOCKING: tool.non_blocking,
            k.TURN_NUMBER: tool.turn.number,
            k.obs_metadata("status"): status,
        }
        if tool.status in ("ok", "error"):
            attrs[k.TOOL_DURATION_MS] = tool.duration_ms()
        error = None
        level = k.LEVEL_DEFAULT
        if status == "error":
            level, error = k.LEVEL_ERROR, tool.error or "error"
            attrs[k.ERROR_TYPE] = "tool_error"
            attrs[k.LF_STATUS_MESSAGE] = error
        elif status == "abandoned":
            level = k.LEVEL_WARNING
            attrs[k.LF_STATUS_MESSAGE] = "no result before the session ended"
        attrs[k.LF_LEVEL] = level
        if self.redact is not None:
            attrs[k.TOOL_CALL_ARGUMENTS] = self.redact.json(tool.args)
            if tool.response is not None:
                attrs[k.TOOL_CALL_RESULT] = self.redact.json(tool.response)
        self.emit(
            f"{k.OP_EXECUTE_TOOL} {tool.name}",
            SpanKind.INTERNAL,
            tool.turn.span_context,
            tool.start_ns,
            end_ns,
            attrs,
            error=error,
        )


def _messages(role: str, text: str, finish: str | None = None) -> str:
    msg: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish is not None:
        msg["finish_reason"] = finish
    return json.dumps([msg], ensure_ascii=False)
