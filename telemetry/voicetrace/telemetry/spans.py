"""Build and emit one session's spans from finished records (on the emitter thread).

Every span is created with all its attributes and explicit start/end timestamps, then ended
at once: cheaper than `set_attribute` calls, and no span can be left open. This is also the one
mapping layer from our records to attribute keys (GenAI semconv + Langfuse + `voice.*`), so a
future OTel voice convention is adopted here without touching the recording code. The
attributes every span of a kind shares are built once per session, not once per span.

Long because: one builder per span of the contract (root, connect, turn, generation, tool,
event) sharing the attribute helpers; the Langfuse view (ChatML, EVENT observations) is in
`langfuse_view`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.content import Redactor
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.langfuse_view import chatml_input, chatml_json, event_attributes
from voicetrace.telemetry.media import Attachment, AudioCapture, MediaUploader
from voicetrace.telemetry.prices import Cost, PriceTable
from voicetrace.telemetry.records import SessionInfo, SessionSummary
from voicetrace.telemetry.turns import ToolRecord, TurnRecord
from voicetrace.telemetry.usage import UsageBreakdown

Attrs = dict[str, Any]
Event = tuple[str, Mapping[str, Any], int]

# Turn end reasons that are not a clean ending for the *turn* (the session may be fine).
_WARN_REASONS = frozenset(
    {"tool_error", "client_disconnect", "server_shutdown", "budget_exhausted"}
)
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
        # Error texts are not content but can quote anything (a tool's message repeating the
        # user's words): always redacted, with the session's own blurred secrets too.
        self.redact_error = Redactor(info.secrets_blurred, max_chars=500)
        # Rule 1: ids on every span (Langfuse filters on them; a lost root orphans nothing).
        self.ids: Attrs = {
            k.SESSION_ID: info.session_id,
            k.USER_ID: info.user_id,
            k.CONVERSATION_ID: info.session_id,
        }
        if info.environment:
            self.ids[k.LF_ENVIRONMENT] = info.environment
        # Trace name and tags on every span too: Langfuse v4 writes each observation as its own
        # row with the trace name/tags of *that* span, and the root ends last (a live or crashed
        # session would be unnamed). Release/version stay off spans (a child's trace update
        # would null the release): `langfuse.release` is a resource attribute (setup).
        self.ids[k.LF_TRACE_NAME] = k.SPAN_SESSION
        if info.tags:
            self.ids[k.LF_TRACE_TAGS] = tuple(str(t) for t in info.tags)
        self.server: Attrs = {}
        if info.server_address:
            self.server[k.SERVER_ADDRESS] = info.server_address
        if info.server_port:
            self.server[k.SERVER_PORT] = int(info.server_port)
        # What every span of a kind shares, built once per session (each span copies it).
        provider, model = info.provider, info.model
        self._connect_base: Attrs = {
            **self.ids,
            **self.server,
            k.LF_OBSERVATION_TYPE: k.OBS_SPAN,
            k.PROVIDER_NAME: provider,
        }
        self._turn_base: Attrs = {
            **self.ids,
            k.LF_OBSERVATION_TYPE: k.OBS_AGENT,
            k.OPERATION_NAME: k.OP_INVOKE_AGENT,
            k.AGENT_NAME: info.agent_name,
            k.PROVIDER_NAME: provider,
        }
        self._chat_base: Attrs = {
            **self.ids,
            **self.server,
            k.LF_OBSERVATION_TYPE: k.OBS_GENERATION,
            k.OPERATION_NAME: k.OP_CHAT,
            k.PROVIDER_NAME: provider,
            k.REQUEST_MODEL: model,
            k.RESPONSE_MODEL: model,
        }
        self._tool_base: Attrs = {
            **self.ids,
            k.LF_OBSERVATION_TYPE: k.OBS_TOOL,
            k.OPERATION_NAME: k.OP_EXECUTE_TOOL,
            k.TOOL_TYPE: "function",
        }
        self._event_base: Attrs = {**self.ids, k.LF_OBSERVATION_TYPE: k.OBS_EVENT}
        self._system: list[dict[str, Any]] | None = None  # redacted ChatML system message
        self._json_memo: dict[int, tuple[Any, str]] = {}  # see redacted_json
        # Turn audio for Langfuse (telemetry.media): set only with capture + consent.
        self.media: tuple[AudioCapture, MediaUploader] | None = None
        # (turn number, redacted text): the trace's input / output, set from the turns.
        self.trace_input: tuple[int, str] | None = None
        self.trace_output: tuple[int, str] | None = None
        self._turn_name = f"{k.OP_INVOKE_AGENT} {info.agent_name}"
        self._chat_name = f"{k.OP_CHAT} {model}"

    # -- primitives ---------------------------------------------------------------------------
    def emit(
        self,
        name: str,
        kind: SpanKind,
        parent: Context | None,
        start_ns: int,
        end_ns: int,
        attrs: Attrs,
        events: Iterable[Event] = (),
        error: str | None = None,
    ) -> Span:
        span = self.tracer.start_span(
            name, context=parent, kind=kind, attributes=attrs, start_time=start_ns
        )
        self.health.add("spans_started")
        try:
            for ev_name, ev_attrs, ts in events:
                span.add_event(ev_name, ev_attrs, timestamp=ts)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
        finally:
            span.end(end_time=max(end_ns, start_ns))
        return span

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
        if info.system_prompt and (prompt := self.content(info.system_prompt)):
            attrs[k.SYSTEM_INSTRUCTIONS] = json.dumps(
                [{"type": "text", "content": prompt}], ensure_ascii=False
            )
        return attrs

    @staticmethod
    def root_end_attributes(s: SessionSummary, error: str | None) -> Attrs:
        """The `voice.session.*` totals and trace KPIs the root gets when the session ends;
        `error` (already redacted) is set only for error end reasons."""
        level = level_for(s.end_reason)
        attrs: Attrs = {
            k.SESSION_END_REASON: s.end_reason,
            k.SESSION_TURNS: s.turns,
            k.SESSION_TOOL_CALLS: s.tool_calls,
            k.SESSION_TOOL_ERRORS: s.tool_errors,
            k.SESSION_INTERRUPTIONS: s.interruptions,
            k.SESSION_DURATION_S: s.duration_s,
            k.SESSION_INPUT_TOKENS: s.input_tokens,
            k.SESSION_OUTPUT_TOKENS: s.output_tokens,
            k.SESSION_AUDIO_IN_S: s.audio_in_s,
            k.SESSION_AUDIO_OUT_S: s.audio_out_s,
            k.SESSION_RECONNECTS: s.reconnects,
            k.SESSION_CAMERA_TOKENS: s.camera_tokens,
            k.SESSION_SCREEN_TOKENS: s.screen_tokens,
            k.SESSION_CAMERA_FRAMES: s.camera_frames,
            k.SESSION_SCREEN_FRAMES: s.screen_frames,
            k.LF_LEVEL: k.LEVEL_ERROR
            if error
            else (k.LEVEL_WARNING if level == k.LEVEL_WARNING else k.LEVEL_DEFAULT),
            k.trace_metadata("turns"): s.turns,
            k.trace_metadata("interruptions"): s.interruptions,
            k.trace_metadata("tool_errors"): s.tool_errors,
            k.trace_metadata("end_reason"): s.end_reason,
            k.trace_metadata("duration_s"): round(s.duration_s, 3),
        }
        if s.cost_usd is not None:
            attrs[k.SESSION_COST_USD] = float(s.cost_usd)
            attrs[k.trace_metadata("cost_usd")] = float(s.cost_usd)
        if error:
            attrs[k.ERROR_TYPE] = s.end_reason
            attrs[k.LF_STATUS_MESSAGE] = error
        return attrs

    # -- connect ------------------------------------------------------------------------------
    def connect(
        self,
        parent: Context | None,
        start_ns: int,
        end_ns: int,
        resumed: bool,
        error: str | None,
        reconnect_reason: str | None = None,
    ) -> None:
        # No model attribute here, and the type set explicitly: Langfuse would otherwise turn a
        # span with a model attribute into a GENERATION (peers' inflated generation counts).
        attrs: Attrs = {
            **self._connect_base,
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
    def turn(self, t: TurnRecord, parent: Context | None) -> Span:
        reason = t.end_reason or "completed"
        t0, t1, t2, t3 = t.timeline()
        speech, endpointing, response = (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6
        total = speech + endpointing + response
        heard, source = t.heard()
        level = level_for(reason)
        attrs: Attrs = {
            **self._turn_base,
            k.TURN_NUMBER: t.number,
            k.TURN_END_REASON: reason,
            k.TURN_TRIGGER: t.trigger,
            k.TURN_INTERRUPTED: t.interrupted,
            k.TURN_USER_SPEECH_MS: speech,
            k.TURN_ENDPOINTING_MS: endpointing,
            k.TURN_RESPONSE_MS: response,
            k.TURN_TOTAL_MS: total,
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
            k.obs_metadata("total_ms"): round(total, 1),
        }
        if t.first_output_ns is not None:
            ttfa = max(t.first_output_ns - t1, 0) / 1e6
            attrs[k.TURN_TTFA_MS] = ttfa
            attrs[k.obs_metadata("ttfa_ms")] = round(ttfa, 1)
        if t.playback_start_ns is not None:
            perceived = max(t.playback_start_ns - t1, 0) / 1e6
            attrs[k.TURN_PERCEIVED_LATENCY_MS] = perceived
            attrs[k.obs_metadata("perceived_latency_ms")] = round(perceived, 1)
        if self.redact is not None:
            said, answer = self.texts(t)
            if said:
                attrs[k.LF_INPUT] = said
                if self.trace_input is None or t.number < self.trace_input[0]:
                    # The trace's input is the first utterance; the earliest turn says it at
                    # once (a crashed session keeps it), the root repeats it at the end.
                    self.trace_input = (t.number, said)
                    attrs[k.LF_TRACE_INPUT] = said
            if answer:
                attrs[k.LF_OUTPUT] = answer
                if self.trace_output is None or t.number >= self.trace_output[0]:
                    self.trace_output = (t.number, answer)
            if thoughts := self.content("".join(t.thoughts).strip()):
                attrs[k.TURN_THOUGHTS] = thoughts
        error = None
        if level == k.LEVEL_ERROR:
            error = reason
            attrs[k.ERROR_TYPE] = reason
            attrs[k.LF_STATUS_MESSAGE] = reason
        end = max(t3, t.close_ns or t3)
        audio = self._audio(t, attrs) if self.media is not None and self.redact else ()
        span = self.emit(
            self._turn_name, SpanKind.INTERNAL, parent, t0, end, attrs, t.events, error
        )
        if audio and self.media is not None:
            ctx = span.get_span_context()
            for attachment in audio:
                self.media[1].submit(attachment, f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
        return span

    def _audio(self, t: TurnRecord, attrs: Attrs) -> list[Attachment]:
        """The turn's WAV clips; its input/output become `{text, audio}` objects whose audio
        is a Langfuse media reference (rendered as a player), the output marked where a cut
        left it (`heard_ms`). Only with capture + consent (the caller checks)."""
        assert self.media is not None
        attachments = self.media[0].take(t.number)
        for a in attachments:
            key = k.LF_INPUT if a.field == "input" else k.LF_OUTPUT
            value: dict[str, Any] = {"text": attrs.get(key, ""), "audio": a.reference}
            value["audio_ms"] = round(a.duration_ms, 1)
            if a.field == "output" and t.cut_ns is not None:
                value["heard_ms"] = round(t.heard()[0], 1)
            attrs[key] = json.dumps(value, ensure_ascii=False)
        return attachments

    # -- generation -----------------------------------------------------------------------------
    def chat(
        self,
        t: TurnRecord,
        parent: Context | None,
        usage: UsageBreakdown | None,
        cost: Cost | None,
        late: bool,
    ) -> None:
        reason = t.end_reason or "completed"
        _, t1, _, t3 = t.timeline()
        finish = _FINISH.get(reason, reason)
        attrs: Attrs = {
            **self._chat_base,
            k.OUTPUT_TYPE: k.OUTPUT_SPEECH if t.audio_out_ms > 0 else k.OUTPUT_TEXT,
            k.RESPONSE_FINISH_REASONS: (finish,),
            k.TURN_NUMBER: t.number,
            k.AUDIO_OUT_MS: t.audio_out_ms,
            k.obs_metadata("turn"): t.number,
        }
        if t.camera_frames or t.screen_frames:
            attrs[k.VIDEO_CAMERA_FRAMES] = t.camera_frames
            attrs[k.VIDEO_SCREEN_FRAMES] = t.screen_frames
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
            camera, screen = t.image_split()
            if camera or screen:
                attrs[k.USAGE_CAMERA_TOKENS] = camera
                attrs[k.USAGE_SCREEN_TOKENS] = screen
            if late:
                attrs[k.USAGE_LATE] = True
            if t.usage_estimated:  # Gemini sent none: still missing, and the tokens are ours
                attrs[k.USAGE_MISSING] = attrs[k.USAGE_ESTIMATED] = True
                level, status_message = k.LEVEL_WARNING, "usage not received; estimated"
        if cost is not None:
            if cost.estimated:
                attrs[k.COST_ESTIMATED] = True
            total = float(cost.total)
            attrs[k.LF_COST_DETAILS] = cost.details_json()
            attrs[k.COST_USD] = total
            attrs[k.COST_USD_DECIMAL] = str(cost.total)
            attrs[k.COST_PRICE_KEY] = cost.model
            attrs[k.obs_metadata("cost_usd")] = total
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
                attrs[k.OUTPUT_MESSAGES] = _messages("assistant", answer, finish)
            # Plain ChatML for Langfuse's chat view (telemetry.langfuse_view).
            chat_in = chatml_input(
                self.system_message(), said, t.tools, self.redacted_json, self.redact_error
            )
            if chat_in:
                attrs[k.LF_INPUT] = chatml_json(chat_in)
            if answer:
                attrs[k.LF_OUTPUT] = chatml_json([{"role": "assistant", "content": answer}])
        error = reason if level == k.LEVEL_ERROR else None
        self.emit(self._chat_name, SpanKind.CLIENT, parent, t1, t3, attrs, error=error)

    def redacted_json(self, value: Any) -> str:
        """Tool arguments/results, redacted once for both the tool span and the generation's
        ChatML (the same objects; kept with the text so an id is never reused)."""
        assert self.redact is not None
        hit = self._json_memo.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = self.redact.json(value)
        if len(self._json_memo) >= 64:  # bounded: tools whose generation already went out
            self._json_memo.clear()
        self._json_memo[id(value)] = (value, text)
        return text

    def system_message(self) -> list[dict[str, Any]]:
        """The redacted system prompt as a ChatML message list (built once per session)."""
        if self._system is None:
            prompt = self.content(self.info.system_prompt or "")
            self._system = [{"role": "system", "content": prompt}] if prompt else []
        return self._system

    # -- events -----------------------------------------------------------------------------------
    def event(
        self,
        name: str,
        attrs: Mapping[str, Any],
        at_ns: int,
        parent: Context | None,
        turn: int | None = None,
    ) -> None:
        """A zero-length EVENT observation (telemetry.langfuse_view)."""
        span_attrs, error = event_attributes(self._event_base, name, attrs, turn)
        self.emit(name, SpanKind.INTERNAL, parent, at_ns, at_ns, span_attrs, error=error)

    def turn_events(self, t: TurnRecord, parent: Context | None) -> None:
        """The turn's barge-in / interruption as EVENT observations under its turn span."""
        for name, attrs, at_ns in t.events:
            if name in k.OBSERVED_EVENTS:
                self.event(name, attrs, at_ns, parent, t.number)

    def unheard_cost(
        self, usage: UsageBreakdown | None, out_ms: float, unheard_ms: float
    ) -> Decimal | None:
        """Cost of the audio generated but never heard: its share of the output audio tokens."""
        if usage is None or self.prices is None or out_ms <= 0 or unheard_ms <= 0:
            return None
        share = Decimal(str(unheard_ms)) / Decimal(str(out_ms))
        return self.prices.audio_output_cost(self.info.model, usage.output["audio"] * share)

    # -- tools ----------------------------------------------------------------------------------
    def tool(self, tool: ToolRecord, parent: Context | None, end_ns: int) -> None:
        status = tool.status or "abandoned"
        attrs: Attrs = {
            **self._tool_base,
            k.TOOL_NAME: tool.name,
            k.TOOL_CALL_ID: tool.call_id,
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
            level, error = k.LEVEL_ERROR, self.redact_error(tool.error or "error")
            attrs[k.ERROR_TYPE] = "tool_error"
            attrs[k.LF_STATUS_MESSAGE] = error
        elif status == "abandoned":
            level = k.LEVEL_WARNING
            attrs[k.LF_STATUS_MESSAGE] = "no result before the session ended"
        attrs[k.LF_LEVEL] = level
        if self.redact is not None:
            attrs[k.TOOL_CALL_ARGUMENTS] = self.redacted_json(tool.args)
            if tool.response is not None:
                attrs[k.TOOL_CALL_RESULT] = self.redacted_json(tool.response)
        self.emit(
            f"{k.OP_EXECUTE_TOOL} {tool.name}",
            SpanKind.INTERNAL,
            parent,
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
