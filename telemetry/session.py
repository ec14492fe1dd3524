"""`SessionTrace`: one voice session's turns, rebuilt from the model's own signals.

Each public method records plain data (cheap, under a per-session lock) and never raises: an
exception is counted in the telemetry's health and swallowed, because tracing must never break
the voice path. Spans are emitted when a turn is finished (telemetry.spans).

Turn rules (Gemini Live with server-side VAD only, no local VAD model needed):
- a turn opens at the first user activity: a voiced frame, an input transcription, typed text,
  or an activity-start marker; model output with no open turn opens a model-initiated turn
  (WHEN_IDLE tool results, proactive audio) with trigger=model;
- user activity while the model is responding is a barge-in: the current turn is cut
  (interrupted, or completed if generation had finished) and a new turn opens at once;
- the server's `interrupted` cuts the current turn too; a cut turn waits for the server's
  `turn_complete`, which returns its summary (so numbering stays right);
- `turn_complete` finishes the turn; its spans go out when its usage is there, or after
  `usage_wait_s` (usage that comes later still lands on the turn's generation).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode

from telemetry import keys as k
from telemetry.content import redact_always
from telemetry.prices import Cost
from telemetry.records import SessionInfo, SessionSummary, TurnSummary, UsageSnapshot
from telemetry.spans import SpanFactory, level_for
from telemetry.turns import ToolRecord, TurnRecord

if TYPE_CHECKING:
    from telemetry.core import VoiceTelemetry

F = TypeVar("F", bound=Callable[..., Any])

# An input transcript this soon after a turn finished is the tail of that turn, not a new one.
_TRANSCRIPT_GRACE_NS = 1_500_000_000
_RECENT_TURNS = 32  # turns kept for playback marks and late usage
_DEFERRED_CHATS = 4  # finished turns whose generation may still wait for usage


def _guard(default: Any = None) -> Callable[[F], F]:
    """Fail-open: run under the session lock, count and swallow any exception."""

    def deco(fn: F) -> F:
        where = fn.__name__

        @functools.wraps(fn)
        def wrapper(self: SessionTrace, *args: Any, **kwargs: Any) -> Any:
            try:
                with self._lock:
                    return fn(self, *args, **kwargs)
            except Exception as exc:
                self._tel.counters.error(where, exc)
                return default

        return wrapper  # type: ignore[return-value]

    return deco


class SessionTrace:
    """The trace of one voice session. Create with `VoiceTelemetry.start_session`."""

    def __init__(
        self, tel: VoiceTelemetry, info: SessionInfo, factory: SpanFactory, root: Span
    ) -> None:
        self._tel, self.info, self._spans, self._root = tel, info, factory, root
        self._lock = threading.RLock()
        self._root_ctx = root.get_span_context() if root.get_span_context().is_valid else None
        self._start_ns = time.time_ns()
        self._turn: TurnRecord | None = None
        self._cut: TurnRecord | None = None  # cut locally, awaiting the server's turn_complete
        self._recent: OrderedDict[int, TurnRecord] = OrderedDict()
        self._tools: dict[str, ToolRecord] = {}
        self._count = 0
        self._connect_ns: int | None = None
        self._connect_resumed = False
        self._idle_result_ns: int | None = None
        self._last_finished_ns = 0
        self._error: str | None = None
        self._ended: SessionSummary | None = None
        self._totals = {
            "tool_calls": 0,
            "tool_errors": 0,
            "interruptions": 0,
            "reconnects": 0,
            "input_tokens": 0,
            "output_tokens": 0,
        }
        self._by_modality: dict[str, int] = {}
        self._cost: Decimal | None = None
        self._audio_in_s = 0.0
        self._audio_out_ms = 0.0
        self._reported_audio = (0.0, 0.0)
        self._cost_cache: tuple[Any, Cost | None] | None = None
        self._metric_base = {k.PROVIDER_NAME: info.provider, k.REQUEST_MODEL: info.model}

    # -- read-only state ----------------------------------------------------------------------
    @property
    def current_turn(self) -> int | None:
        """The turn the model is working on: a cut turn until the server completes it, else
        the open one."""
        t = self._cut or self._turn
        return t.number if t is not None else None

    @property
    def turns(self) -> int:
        return self._count

    @property
    def ended(self) -> bool:
        return self._ended is not None

    # -- connection -----------------------------------------------------------------------------
    @_guard()
    def connect_started(self, resumed: bool = False) -> None:
        self._connect_ns, self._connect_resumed = time.time_ns(), bool(resumed)

    @_guard()
    def connect_finished(self, error: str | None = None) -> None:
        now = time.time_ns()
        start = self._connect_ns or now
        self._connect_ns = None
        err = redact_always(error) if error else None
        self._spans.connect(self._root_ctx, start, now, self._connect_resumed, err)
        if err:
            self._error = err

    # -- user side ------------------------------------------------------------------------------
    @_guard()
    def user_audio(self, duration_s: float, voiced: bool, at_ns: int | None = None) -> None:
        now = at_ns or time.time_ns()
        self._audio_in_s += duration_s
        if voiced:
            t = self._user_turn(now, "user_audio")
            if t.speech_start_ns is None:
                t.speech_start_ns = now
                t.events.append((k.EV_SPEECH_STARTED, {}, now))
            t.user_end_ns = now
        if self._turn is not None:
            self._turn.audio_in_s += duration_s

    @_guard()
    def user_text(self, text: str, at_ns: int | None = None) -> None:
        now = at_ns or time.time_ns()
        t = self._user_turn(now, "user_text")
        t.user_end_ns = now
        t.user_text.append(text if not t.user_text else " " + text)

    @_guard()
    def user_activity(self, kind: Literal["start", "end"]) -> None:
        now = time.time_ns()
        if kind == "start":
            t = self._user_turn(now, "activity")
            t.events.append((k.EV_SPEECH_STARTED, {"source": "activity_start"}, now))
        elif kind == "end":
            if self._turn is not None and not self._turn.responding:
                self._turn.user_end_ns = now
                self._turn.events.append((k.EV_SPEECH_ENDED, {"source": "activity_end"}, now))
        else:
            raise ValueError(f"user_activity kind must be 'start' or 'end', not {kind!r}")

    @_guard()
    def audio_stream_end(self) -> None:
        now = time.time_ns()
        t = self._turn
        if t is not None and not t.responding:
            t.events.append((k.EV_SPEECH_ENDED, {"source": "audio_stream_end"}, now))

    @_guard()
    def input_transcript(self, text: str, finished: bool = False) -> None:
        now = time.time_ns()
        t = self._turn
        if t is None:
            last = next(reversed(self._recent.values()), None)
            recent = now - self._last_finished_ns < _TRANSCRIPT_GRACE_NS
            if self._cut is None and last is not None and recent and not last.chat_emitted:
                t = last  # the transcription's tail of the turn that just finished
            else:
                t = self._user_turn(now, "transcript")
        t.user_text.append(text)
        if finished and t.speech_start_ns is not None:
            t.events.append((k.EV_SPEECH_ENDED, {"source": "transcription"}, now))

    # -- model side -----------------------------------------------------------------------------
    @_guard()
    def model_audio(self, nbytes: int, sample_rate: int = 24000, at_ns: int | None = None) -> None:
        now = at_ns or time.time_ns()
        ms = nbytes / 2 / sample_rate * 1000.0  # PCM16 mono
        t = self._output_turn(now)
        t.mark_output(now, audible=True)
        t.audio_out_ms += ms
        self._audio_out_ms += ms

    @_guard()
    def model_text(self, text: str, thought: bool = False) -> None:
        now = time.time_ns()
        t = self._output_turn(now)
        if thought:
            t.thoughts.append(text)
        else:
            t.mark_output(now, audible=True)
            t.output_text.append(text)

    @_guard()
    def output_transcript(self, text: str) -> None:
        t = self._cut or self._turn
        if t is None:
            t = next(reversed(self._recent.values()), None)
            if t is None or t.chat_emitted:
                return
        t.output_text.append(text)

    @_guard()
    def tool_call(
        self, call_id: str, name: str, args: dict[str, Any], non_blocking: bool = False
    ) -> None:
        now = time.time_ns()
        t = self._output_turn(now)
        t.mark_output(now, audible=False)
        rec = ToolRecord(str(call_id), str(name), args, bool(non_blocking), now, t)
        t.tools.append(rec)
        self._tools[rec.call_id] = rec
        self._totals["tool_calls"] += 1

    @_guard()
    def tool_result(
        self,
        call_id: str,
        response: dict[str, Any],
        error: str | None = None,
        duration_s: float | None = None,
    ) -> None:
        now = time.time_ns()
        rec = self._tools.pop(str(call_id), None)
        if rec is None or rec.done:
            return
        rec.end_ns, rec.response = now, response
        rec.duration_s = duration_s
        rec.status = "error" if error else "ok"
        if error:
            rec.error = redact_always(error)
            self._totals["tool_errors"] += 1
        self._tel.metrics.tool_calls.add(
            1, {**self._metric_base, k.TOOL_NAME: rec.name, k.TOOL_STATUS: rec.status}
        )
        if error:
            self._tel.metrics.tool_errors.add(1, {**self._metric_base, k.TOOL_NAME: rec.name})
        if rec.non_blocking and self._turn is None and self._cut is None:
            self._idle_result_ns = now  # a WHEN_IDLE result may make the model speak
        self._tool_done(rec, now)

    @_guard()
    def tool_cancelled(self, ids: Sequence[str]) -> None:
        now = time.time_ns()
        for call_id in ids:
            rec = self._tools.pop(str(call_id), None)
            if rec is not None and not rec.done:
                rec.status, rec.end_ns = "cancelled", now
                self._tool_done(rec, now)

    @_guard()
    def interrupted(self) -> None:
        now = time.time_ns()
        t = self._cut or self._turn
        if t is None:
            return
        if not t.interrupted:
            t.events.append((k.EV_INTERRUPTED, {}, now))
        t.interrupted, t.end_reason = True, "interrupted"
        if t.cut_ns is None:
            t.cut_ns = now
        if t is self._turn:
            self._turn, self._cut = None, t

    @_guard()
    def generation_complete(self) -> None:
        t = self._cut or self._turn
        if t is not None:
            t.generation_complete = True

    @_guard()
    def usage(self, u: UsageSnapshot) -> None:
        if not isinstance(u, UsageSnapshot):
            raise TypeError("usage() takes a UsageSnapshot")
        t = self._usage_target()
        if t is None:
            self._tel.counters.add("usage_ignored")
            return
        if t.chat_emitted:
            self._tel.counters.add("usage_ignored")  # its generation already went out with usage
            return
        t.usage = u  # the last snapshot of a turn wins; never summed
        if t.state in ("finished", "emitted"):
            t.usage_late = t.state == "emitted"
            if t.usage_late:
                self._tel.counters.add("usage_late")
            self._safe_emit(t, time.time_ns())

    @_guard()
    def turn_complete(self) -> TurnSummary | None:
        now = time.time_ns()
        t = self._cut or self._turn
        if t is None:
            return None
        summary = self._finish(t, now, None)
        self._flush_due(now)
        return summary

    # -- client playback marks ------------------------------------------------------------------
    @_guard()
    def playback(
        self,
        turn: int,
        event: Literal["started", "stopped"],
        played_ms: float,
        at_ns: int | None = None,
    ) -> None:
        if event not in ("started", "stopped"):
            raise ValueError(f"playback event must be 'started' or 'stopped', not {event!r}")
        now = at_ns or time.time_ns()
        t = self._find(int(turn))
        if t is None:
            return
        if event == "started" and t.playback_start_ns is None:
            t.playback_start_ns = now
            t.events.append((k.EV_PLAYBACK_STARTED, {}, now))
            perceived = t.perceived_latency_ms()
            if perceived is not None:
                self._tel.metrics.perceived.record(perceived / 1000.0, self._metric_base)
        elif event == "stopped":
            t.heard_ms = max(float(played_ms), 0.0)
            t.events.append((k.EV_PLAYBACK_STOPPED, {k.AUDIO_HEARD_MS: t.heard_ms}, now))

    # -- connection lifecycle -------------------------------------------------------------------
    @_guard()
    def go_away(self, time_left_s: float) -> None:
        self._root.add_event(k.EV_GO_AWAY, {"time_left_s": float(time_left_s)})

    @_guard()
    def resumption_handle(self, handle: str) -> None:
        # The handle resumes the session: a credential. Record that one came, never its value.
        self._root.add_event(k.EV_RESUMPTION, {"resumable": bool(handle)})

    @_guard()
    def reconnected(self, reason: str, downtime_s: float, resumed: bool) -> None:
        now = time.time_ns()
        start = now - int(max(downtime_s, 0.0) * 1e9)
        self._totals["reconnects"] += 1
        self._spans.connect(self._root_ctx, start, now, bool(resumed), None, str(reason))
        self._root.add_event(
            k.EV_RECONNECT,
            {"reason": str(reason), "downtime_s": float(downtime_s), "resumed": bool(resumed)},
        )

    @_guard()
    def model_error(self, code: int | None, reason: str) -> None:
        now = time.time_ns()
        self._error = redact_always(f"{code}: {reason}" if code is not None else reason)
        self._root.add_event(
            k.EV_MODEL_ERROR, {"code": code if code is not None else -1, "reason": self._error}
        )
        for t in (self._cut, self._turn):
            if t is not None:
                self._finish(t, now, "model_error")

    # -- end --------------------------------------------------------------------------------------
    @_guard()
    def end(self, reason: str = "completed") -> SessionSummary | None:
        if self._ended is not None:
            return self._ended
        now = time.time_ns()
        reason = reason if reason in k.END_REASONS else "internal_error"
        for t in (self._cut, self._turn):
            if t is not None:
                self._finish(t, now, reason if t.end_reason is None else None)
        for t in list(self._recent.values()):
            self._safe_emit(t, now, final=True)
        self._report_audio()
        summary = self._summary(reason, now)
        self._ended = summary
        self._close_root(summary, now)
        self._tel._session_ended(self)
        return summary

    # -- internals ----------------------------------------------------------------------------
    def _open(self, now: int, trigger: str) -> TurnRecord:
        self._count += 1
        start = now
        if trigger == "model" and self._idle_result_ns is not None:
            start = self._idle_result_ns  # the model speaks because a WHEN_IDLE result came
        self._idle_result_ns = None
        t = TurnRecord(number=self._count, trigger=trigger, start_ns=min(start, now))
        self._turn = t
        self._recent[t.number] = t
        while len(self._recent) > _RECENT_TURNS:
            old_n, old = next(iter(self._recent.items()))
            if old.state in ("finished", "emitted"):
                self._safe_emit(old, now, final=True)
            self._recent.pop(old_n, None)
        return t

    def _user_turn(self, now: int, trigger: str) -> TurnRecord:
        t = self._turn
        if t is not None and t.responding:
            # Barge-in: the user talks over the model. Cut this turn, open the next.
            t.cut_ns = now
            t.events.append((k.EV_BARGE_IN, {}, now))
            if not t.generation_complete:
                t.interrupted, t.end_reason = True, "interrupted"
            if self._cut is not None:  # the server never completed the previous cut turn
                self._finish(self._cut, now, None)
            self._cut, self._turn = t, None
            t = None
        return t if t is not None else self._open(now, trigger)

    def _output_turn(self, now: int) -> TurnRecord:
        return self._cut or self._turn or self._open(now, "model")

    def _usage_target(self) -> TurnRecord | None:
        if self._cut is not None:
            return self._cut
        if self._turn is not None and self._turn.responding:
            return self._turn
        for t in reversed(self._recent.values()):
            if t.state in ("finished", "emitted") and not t.chat_emitted and t.usage is None:
                return t
            if t.state in ("finished", "emitted"):
                break
        return self._turn

    def _find(self, number: int) -> TurnRecord | None:
        return self._recent.get(number)

    def _finish(self, t: TurnRecord, now: int, reason: str | None) -> TurnSummary:
        """Close a turn: fix its end reason and numbers, then emit or wait for usage."""
        if t is self._turn:
            self._turn = None
        if t is self._cut:
            self._cut = None
        if reason is not None:
            t.end_reason = reason
        elif t.end_reason is None:
            failed = any(tool.status == "error" for tool in t.tools)
            t.end_reason = "tool_error" if failed else "completed"
        t.close_ns = now
        t.state = "finished"
        self._last_finished_ns = now
        if t.interrupted:
            self._totals["interruptions"] += 1
        cost = self._cost_of(t)
        t.summary = t.make_summary(float(cost.total) if cost is not None else None)
        phases = t.phases_ms()
        self._tel.metrics.record_turn(self._metric_base, phases, t.end_reason, t.interrupted)
        self._report_audio()
        if t.usage is not None:
            self._safe_emit(t, now)
        else:
            t.deadline_ns = now + int(self._tel.usage_wait_s * 1e9)
            self._tel._schedule(self, t.deadline_ns)
        return t.summary

    def _report_audio(self) -> None:
        """Audio seconds to the metrics, as deltas (silence between turns bills too)."""
        audio_in, audio_out = self._audio_in_s, self._audio_out_ms / 1000.0
        if audio_in > self._reported_audio[0]:
            self._tel.metrics.audio_in.add(audio_in - self._reported_audio[0], self._metric_base)
        if audio_out > self._reported_audio[1]:
            self._tel.metrics.audio_out.add(audio_out - self._reported_audio[1], self._metric_base)
        self._reported_audio = (audio_in, audio_out)

    def _cost_of(self, t: TurnRecord) -> Cost | None:
        """Cost of the turn's (last) usage, computed once per snapshot."""
        usage = t.breakdown()
        if usage is None or self._spans.prices is None:
            return None
        if self._cost_cache is None or self._cost_cache[0] is not usage:
            self._cost_cache = (usage, self._spans.prices.cost(self.info.model, usage))
        return self._cost_cache[1]

    def _safe_emit(self, t: TurnRecord, now: int, final: bool = False) -> None:
        """Emission failures are counted, and never cost the caller its turn summary."""
        try:
            self._emit(t, now, final)
        except Exception as exc:
            self._tel.counters.error("emit", exc)
            if t.state == "finished":
                t.state = "emitted"  # do not retry a span the tracer cannot build
            t.chat_emitted = True

    def _emit(self, t: TurnRecord, now: int, final: bool = False) -> None:
        """Emit what is due: the turn span (with its tools) once; the generation once usage is
        there, or when waiting is over (`final`, or the deadline passed)."""
        if t.state == "finished":
            t.span_context = self._spans.turn(t, self._root_ctx)
            t.state = "emitted"
            self._tel.counters.add("turns_emitted")
        for tool in t.tools:
            if tool.done or final:
                self._emit_tool(tool, now)
        if t.chat_emitted:
            return
        if t.usage is None and not final:
            return  # the generation waits for (late) usage; bounded by _DEFERRED_CHATS
        if t.usage is None and t.response_start_ns is None:
            t.chat_emitted = True  # nothing generated and nothing billed: no generation
            return
        usage = t.breakdown()
        cost = self._cost_of(t)
        self._spans.chat(t, usage, cost)
        t.chat_emitted = True
        self._account(t, usage, cost)

    def _account(self, t: TurnRecord, usage: Any, cost: Any) -> None:
        if usage is None:
            return
        self._totals["input_tokens"] += usage.input_tokens
        self._totals["output_tokens"] += usage.output_tokens
        for key, n in usage.by_modality().items():
            self._by_modality[key] = self._by_modality.get(key, 0) + n
        if cost is not None:
            self._cost = (self._cost or Decimal(0)) + cost.total
        _, t1, _, t3 = t.timeline()
        ttfc = None if t.first_output_ns is None else max(t.first_output_ns - t1, 0) / 1e9
        self._tel.metrics.record_chat(
            self._metric_base,
            usage.input_tokens,
            usage.output_tokens,
            usage.by_modality(),
            (t3 - t1) / 1e9,
            ttfc,
            float(cost.total) if cost is not None else None,
        )
        heard, _ = t.heard()
        if t.audio_out_ms > heard:
            self._tel.metrics.audio_unheard.add(
                (t.audio_out_ms - heard) / 1000.0, self._metric_base
            )

    def _emit_tool(self, tool: ToolRecord, now: int) -> None:
        if tool.emitted or tool.turn.span_context is None:
            return
        if not tool.done:
            tool.status, tool.end_ns = "abandoned", now
            self._tools.pop(tool.call_id, None)
        tool.emitted = True
        self._spans.tool(tool, tool.end_ns or now)

    def _tool_done(self, rec: ToolRecord, now: int) -> None:
        t = rec.turn
        if t.state == "open" and rec.status != "cancelled":
            t.mark_output(now, audible=False)  # tool time is inside the response phase
        if t.state == "emitted":
            self._emit_tool(rec, now)  # a non-blocking result after its turn went out

    def _flush_due(self, now: int) -> None:
        """Emit finished turns whose usage wait is over (called by the reaper and by calls)."""
        deferred = []
        for t in list(self._recent.values()):
            if t.state == "finished" and now >= t.deadline_ns:
                self._safe_emit(t, now)
            if t.state == "emitted" and not t.chat_emitted:
                deferred.append(t)
        for t in deferred[: max(len(deferred) - _DEFERRED_CHATS, 0)]:
            self._safe_emit(t, now, final=True)  # stop waiting for the oldest generations' usage

    def _expire(self, now: int) -> None:
        with self._lock:
            try:
                self._flush_due(now)
            except Exception as exc:
                self._tel.counters.error("expire", exc)

    def _summary(self, reason: str, now: int) -> SessionSummary:
        return SessionSummary(
            session_id=self.info.session_id,
            end_reason=reason,
            turns=self._count,
            tool_calls=self._totals["tool_calls"],
            tool_errors=self._totals["tool_errors"],
            interruptions=self._totals["interruptions"],
            duration_s=(now - self._start_ns) / 1e9,
            input_tokens=self._totals["input_tokens"],
            output_tokens=self._totals["output_tokens"],
            tokens_by_modality=dict(self._by_modality),
            cost_usd=float(self._cost) if self._cost is not None else None,
            audio_in_s=self._audio_in_s,
            audio_out_s=self._audio_out_ms / 1000.0,
            reconnects=self._totals["reconnects"],
        )

    def _close_root(self, s: SessionSummary, now: int) -> None:
        level = level_for(s.end_reason)
        error = self._error if s.end_reason in k.ERROR_END_REASONS else None
        if s.end_reason in k.ERROR_END_REASONS and error is None:
            error = s.end_reason
        attrs: dict[str, Any] = {
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
            attrs[k.SESSION_COST_USD] = s.cost_usd
            attrs[k.trace_metadata("cost_usd")] = s.cost_usd
        if error:
            attrs[k.ERROR_TYPE] = s.end_reason
            attrs[k.LF_STATUS_MESSAGE] = error
        root = self._root
        if root is INVALID_SPAN:
            return
        try:
            root.set_attributes(attrs)
            if error:
                root.set_status(Status(StatusCode.ERROR, error))
        finally:
            root.end(end_time=now)
