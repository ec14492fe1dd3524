"""`SessionTrace`: one voice session's turns, rebuilt from the model's own signals.

Each public method records plain data (a few attribute writes under a per-session lock) and
never raises: an exception is counted in the telemetry's health and swallowed, because tracing
must never break the voice path. Spans and metrics are not built here: finished turns go to the
`VoiceTelemetry`'s emitter thread (telemetry.outbox decides when, telemetry.writer builds them),
so they exist after `VoiceTelemetry.force_flush()`, not when a method returns.

Turn rules (Gemini Live with server-side VAD only, no local VAD model needed):
- a turn opens at the first user activity: a voiced frame, an input transcription, typed text,
  or an activity-start marker; model output with no open turn opens a model-initiated turn
  (WHEN_IDLE tool results, proactive audio) with trigger=model;
- user activity while the model is responding is a barge-in: the current turn is cut
  (interrupted, or completed if generation had finished) and a new turn opens at once;
- the server's `interrupted` cuts the current turn too; a cut turn waits for the server's
  `turn_complete`, which returns its summary (so numbering stays right);
- `turn_complete` finishes the turn; its spans go out when its usage is there, or after
  `usage_wait_s` (usage that comes later still lands on the turn's generation, until a later
  turn finishes); a generation that goes out for good without usage is estimated (`estimates`).

Long because: it is the public API, one small fail-open method per voice event; the state
machine (`turnbook`), emission (`outbox`) and span building (`writer`) live elsewhere.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from voicetrace.telemetry import keys as k
from voicetrace.telemetry.emitter import Emitter
from voicetrace.telemetry.estimates import text_tokens
from voicetrace.telemetry.frames import FrameSource
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.media import AudioCapture
from voicetrace.telemetry.outbox import TurnOutbox
from voicetrace.telemetry.records import (
    EndReason,
    SessionInfo,
    SessionSummary,
    TurnSettled,
    TurnSummary,
    UsageSnapshot,
)
from voicetrace.telemetry.recovery import RootContext
from voicetrace.telemetry.turnbook import TurnBook
from voicetrace.telemetry.turns import ToolRecord
from voicetrace.telemetry.writer import SessionWriter

F = TypeVar("F", bound=Callable[..., Any])


def _guard(default: Any = None) -> Callable[[F], F]:
    """Fail-open: run under the session lock, count and swallow any exception; then, outside
    the lock, tell the app about turns whose usage this call settled."""

    def deco(fn: F) -> F:
        where = fn.__name__

        @functools.wraps(fn)
        def wrapper(self: SessionTrace, *args: Any, **kwargs: Any) -> Any:
            try:
                with self._lock:
                    result = fn(self, *args, **kwargs)
            except Exception as exc:
                self._counters.error(where, exc)
                result = default
            if self._settled:
                self._notify_settled()
            return result

        return wrapper  # type: ignore[return-value]

    return deco


class SessionTrace:
    """The trace of one voice session. Create with `VoiceTelemetry.start_session`."""

    def __init__(
        self,
        info: SessionInfo,
        writer: SessionWriter,
        *,
        emitter: Emitter,
        counters: TelemetryHealth,
        content: bool,
        usage_wait_s: float,
        on_end: Callable[[SessionTrace], None] | None = None,
        on_turn_settled: TurnSettled | None = None,
        audio_capture: AudioCapture | None = None,
    ) -> None:
        self.info, self._w = info, writer
        self._emitter, self._counters, self._on_end = emitter, counters, on_end
        self._on_turn_settled = on_turn_settled
        self._capture = audio_capture
        self._settled: list[TurnSummary] = []  # settled under the lock, announced outside it
        self._lock = threading.RLock()
        self._submit = emitter.submit
        self._out = TurnOutbox(
            writer,
            self._submit,
            self._schedule,
            writer.spans.prices,
            info.model,
            int(usage_wait_s * 1e9),
            self._settled.append,
            # The context a first turn without usage carries: the system prompt (tool
            # declarations are not known here); every reported usage corrects it.
            context_tokens=text_tokens(info.system_prompt or ""),
        )
        self._book = TurnBook(self._out)
        self._content = content  # False: text is never kept, so nothing is redacted either
        self._start_ns = time.time_ns()
        self._tools: dict[str, ToolRecord] = {}
        self._connect_ns: int | None = None
        self._connect_resumed = False
        self._error: str | None = None  # as reported; the writer redacts it
        self._ended: SessionSummary | None = None
        self._tool_calls = self._tool_errors = self._reconnects = 0

    # -- read-only state ----------------------------------------------------------------------
    @property
    def current_turn(self) -> int | None:
        """The turn the model is working on: a cut turn until the server completes it, else
        the open one."""
        t = self._book.cut or self._book.turn
        return t.number if t is not None else None

    @property
    def turns(self) -> int:
        return self._book.count

    @property
    def ended(self) -> bool:
        return self._ended is not None

    @property
    def root_context(self) -> RootContext | None:
        """The root span's ids (store them: `VoiceTelemetry.close_lost_session` can then end
        this trace if the process dies); None when tracing is off."""
        try:
            ctx = self._w.root.get_span_context()
            if not ctx.is_valid:
                return None
            return RootContext(
                f"{ctx.trace_id:032x}",
                f"{ctx.span_id:016x}",
                ctx.trace_flags.sampled,
                self._start_ns,
            )
        except Exception as exc:
            self._counters.error("root_context", exc)
            return None

    @property
    def records_audio(self) -> bool:
        """True when `audio()` keeps the turn audio (Langfuse media, capture + consent)."""
        return self._capture is not None

    # -- recorded audio and budgets -------------------------------------------------------------
    @_guard()
    def audio(self, direction: Literal["input", "output"], pcm16: bytes) -> None:
        """Keep the PCM16 of the current turn for its Langfuse media (bounded per session;
        a no-op unless `records_audio`). Input is 16 kHz, output 24 kHz."""
        capture = self._capture
        if capture is None:
            return
        book = self._book
        t = book.cut or book.turn
        if t is not None:
            capture.add(t.number, direction, pcm16)

    @_guard()
    def budget(self, paused: bool, **numbers: float | str) -> None:
        """A budget warning (`paused=False`) or pause: an EVENT observation with `numbers`
        (metric, used, limit, ratio…)."""
        self._submit(self._w.budget, bool(paused), dict(numbers), time.time_ns())

    # -- connection -----------------------------------------------------------------------------
    @_guard()
    def connect_started(self, resumed: bool = False) -> None:
        self._connect_ns, self._connect_resumed = time.time_ns(), bool(resumed)

    @_guard()
    def connect_finished(self, error: str | None = None) -> None:
        now = time.time_ns()
        start = self._connect_ns or now
        self._connect_ns = None
        if error:
            self._error = str(error)
        self._submit(self._w.connect, start, now, self._connect_resumed, error or None)

    # -- user side ------------------------------------------------------------------------------
    @_guard()
    def user_audio(self, duration_s: float, voiced: bool, at_ns: int | None = None) -> None:
        now = at_ns or time.time_ns()
        book = self._book
        book.audio_in_s += duration_s
        t = book.turn
        if voiced:
            if t is None or t.response_start_ns is not None:  # not the common case
                t = book.user_turn(now, "user_audio")
            if t.speech_start_ns is None:
                t.speech_start_ns = now
                t.add_event(k.EV_SPEECH_STARTED, {}, now)
            t.user_end_ns = now
        if t is not None:
            t.audio_in_s += duration_s

    @_guard()
    def user_text(self, text: str, at_ns: int | None = None) -> None:
        now = at_ns or time.time_ns()
        t = self._book.user_turn(now, "user_text")
        t.user_end_ns = now
        t.text_in_tokens += text_tokens(text)
        if self._content:
            t.user_text.append(text if not t.user_text else " " + text)

    @_guard()
    def video_frame(self, source: FrameSource, tokens: int = 0) -> None:
        """A camera or screen-share frame was forwarded to the model: the turn's image tokens
        are split by source in proportion to these (telemetry.frames). `tokens` is what one
        frame costs at the session's media resolution: a turn Gemini reports no usage for is
        estimated with it (every frame forwarded since the carried usage, `estimates`)."""
        self._book.frame(source, tokens)

    @_guard()
    def user_activity(self, kind: Literal["start", "end"]) -> None:
        now = time.time_ns()
        if kind == "start":
            t = self._book.user_turn(now, "activity")
            t.add_event(k.EV_SPEECH_STARTED, {"source": "activity_start"}, now)
        elif kind == "end":
            current = self._book.turn
            if current is not None and not current.responding:
                current.user_end_ns = now
                current.add_event(k.EV_SPEECH_ENDED, {"source": "activity_end"}, now)
        else:
            raise ValueError(f"user_activity kind must be 'start' or 'end', not {kind!r}")

    @_guard()
    def audio_stream_end(self) -> None:
        t = self._book.turn
        if t is not None and not t.responding:
            t.add_event(k.EV_SPEECH_ENDED, {"source": "audio_stream_end"}, time.time_ns())

    @_guard()
    def input_transcript(self, text: str, finished: bool = False) -> None:
        now = time.time_ns()
        t = self._book.transcript_turn(now)
        if self._content:
            t.user_text.append(text)
        if finished and t.speech_start_ns is not None:
            t.add_event(k.EV_SPEECH_ENDED, {"source": "transcription"}, now)

    # -- model side -----------------------------------------------------------------------------
    @_guard()
    def model_audio(self, nbytes: int, sample_rate: int = 24000, at_ns: int | None = None) -> None:
        now = at_ns or time.time_ns()
        ms = nbytes / 2 / sample_rate * 1000.0  # PCM16 mono
        book = self._book
        t = book.cut or book.turn or book.open(now, "model")
        t.mark_output(now, audible=True)
        t.audio_out_ms += ms
        book.audio_out_ms += ms

    @_guard()
    def model_text(self, text: str, thought: bool = False) -> None:
        now = time.time_ns()
        book = self._book
        t = book.cut or book.turn or book.open(now, "model")
        if not thought:
            t.mark_output(now, audible=True)
            t.text_out_tokens += text_tokens(text)
        if self._content:
            (t.thoughts if thought else t.output_text).append(text)

    @_guard()
    def output_transcript(self, text: str) -> None:
        if not self._content:
            return  # transcripts only ever feed content attributes
        t = self._book.cut or self._book.turn
        if t is None:
            t = next(reversed(self._book.recent.values()), None)
            if t is None or t.chat_emitted:
                return
        t.output_text.append(text)

    @_guard()
    def tool_call(
        self, call_id: str, name: str, args: dict[str, Any], non_blocking: bool = False
    ) -> None:
        now = time.time_ns()
        book = self._book
        t = book.cut or book.turn or book.open(now, "model")
        t.mark_output(now, audible=False)
        rec = ToolRecord(str(call_id), str(name), args, bool(non_blocking), now, t)
        t.tools.append(rec)
        self._tools[rec.call_id] = rec
        self._tool_calls += 1

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
        rec.end_ns, rec.response, rec.duration_s = now, response, duration_s
        if error:
            rec.status, rec.error = "error", str(error)
            self._tool_errors += 1
        else:
            rec.status = "ok"
        if rec.non_blocking and self._book.turn is None and self._book.cut is None:
            self._book.idle_result_ns = now
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
        book = self._book
        t = book.cut or book.turn
        if t is None:
            return
        now = time.time_ns()
        if not t.interrupted:
            t.add_event(k.EV_INTERRUPTED, {}, now)
        t.interrupted, t.end_reason = True, "interrupted"
        if t.cut_ns is None:
            t.cut_ns = now
        if t is book.turn:
            book.turn, book.cut = None, t

    @_guard()
    def generation_complete(self) -> None:
        t = self._book.cut or self._book.turn
        if t is not None:
            t.generation_complete = True

    @_guard()
    def usage(self, u: UsageSnapshot) -> None:
        if not isinstance(u, UsageSnapshot):
            raise TypeError("usage() takes a UsageSnapshot")
        t = self._book.usage_target()
        if t is None or t.chat_emitted:  # none, or its generation already went out for good
            self._counters.add("usage_ignored")
            last = next(reversed(self._book.recent.values()), None)
            if last is not None and last.usage_estimated:
                # Most likely that turn's own usage, after its estimate went out for good: the
                # estimate stays (ledger, budgets, spans): never both, never a correction.
                self._counters.add("usage_after_estimate")
            return
        t.usage = u  # the last snapshot of a turn wins; never summed
        self._book.see_frames(t)
        if t.state != "open":
            t.usage_late = t.state == "emitted"
            if t.usage_late:
                self._counters.add("usage_late")
            self._out.usage_arrived(t, time.time_ns())

    @_guard()
    def turn_complete(self) -> TurnSummary | None:
        t = self._book.cut or self._book.turn
        if t is None:
            return None
        now = time.time_ns()
        summary = self._book.finish(t, now, None)
        self._out.flush_due(now)
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
        t = self._book.recent.get(int(turn))
        if t is None:
            return
        if event == "started" and t.playback_start_ns is None:
            t.playback_start_ns = now
            t.add_event(k.EV_PLAYBACK_STARTED, {}, now)
            perceived = t.perceived_latency_ms()
            if perceived is not None:
                self._submit(self._w.perceived, perceived / 1000.0)
        elif event == "stopped":
            t.heard_ms = max(float(played_ms), 0.0)
            t.add_event(k.EV_PLAYBACK_STOPPED, {k.AUDIO_HEARD_MS: t.heard_ms}, now)
            if t.state != "open" and not t.chat_emitted:
                self._out.usage_arrived(t, now)  # a cut turn's generation waited for this

    # -- connection lifecycle -------------------------------------------------------------------
    @_guard()
    def go_away(self, time_left_s: float) -> None:
        attrs = {"time_left_s": float(time_left_s)}
        self._submit(self._w.event, k.EV_GO_AWAY, attrs, time.time_ns())

    @_guard()
    def resumption_handle(self, handle: str) -> None:
        # The handle resumes the session: a credential. Record that one came, never its value.
        self._submit(self._w.event, k.EV_RESUMPTION, {"resumable": bool(handle)}, time.time_ns())

    @_guard()
    def reconnected(self, reason: str, downtime_s: float, resumed: bool) -> None:
        now = time.time_ns()
        start = now - int(max(downtime_s, 0.0) * 1e9)
        self._reconnects += 1
        self._submit(self._w.connect, start, now, bool(resumed), None, str(reason))
        attrs = {"reason": str(reason), "downtime_s": float(downtime_s), "resumed": bool(resumed)}
        self._submit(self._w.event, k.EV_RECONNECT, attrs, now)

    @_guard()
    def model_error(self, code: int | None, reason: str) -> None:
        now = time.time_ns()
        self._error = f"{code}: {reason}" if code is not None else str(reason)
        self._submit(self._w.model_error, code, self._error, now)
        for t in (self._book.cut, self._book.turn):
            if t is not None:
                self._book.finish(t, now, "model_error")

    # -- end --------------------------------------------------------------------------------------
    @_guard()
    def end(self, reason: str = EndReason.COMPLETED) -> SessionSummary | None:
        if self._ended is not None:
            return self._ended
        now = time.time_ns()
        reason = EndReason.parse(reason)
        book = self._book
        for t in (book.cut, book.turn):
            if t is not None:
                book.finish(t, now, reason if t.end_reason is None else None)
        self._out.emit_final(book.recent.values(), now)
        self._out.report_audio(book.audio_in_s, book.audio_out_ms)
        self._ended = summary = self._summary(reason, now)
        # Never dropped: the root is the session's last job, after every child span.
        self._emitter.submit_control(self._w.close, summary, self._error, now)
        if self._on_end is not None:
            self._on_end(self)
        return summary

    # -- internals ----------------------------------------------------------------------------
    def _schedule(self, deadline_ns: int) -> None:
        self._emitter.wake_at(deadline_ns, self)

    def _expire(self, now: int) -> None:
        """The emitter thread's wake-up at a usage deadline."""
        with self._lock:
            try:
                self._out.flush_due(now)
            except Exception as exc:
                self._counters.error("expire", exc)
        if self._settled:
            self._notify_settled()

    def _notify_settled(self) -> None:
        with self._lock:
            settled, self._settled[:] = list(self._settled), []
        estimated = sum(1 for summary in settled if summary.usage_estimated)
        if estimated:
            self._counters.add("usage_estimated", estimated)
        callback = self._on_turn_settled
        if callback is None:
            return
        for summary in settled:
            try:
                callback(summary)
            except Exception as exc:
                self._counters.error("on_turn_settled", exc)

    def _tool_done(self, rec: ToolRecord, now: int) -> None:
        if rec.turn.state == "open" and rec.status != "cancelled":
            rec.turn.mark_output(now, audible=False)  # tool time is inside the response phase
        self._out.tool_done(rec, now)

    def _summary(self, reason: str, now: int) -> SessionSummary:
        tokens_in, tokens_out, by_modality, cost = self._out.totals()
        camera, screen = self._out.image_totals
        book = self._book
        return SessionSummary(
            session_id=self.info.session_id,
            end_reason=reason,
            turns=book.count,
            tool_calls=self._tool_calls,
            tool_errors=self._tool_errors,
            interruptions=book.interruptions,
            duration_s=(now - self._start_ns) / 1e9,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            tokens_by_modality=by_modality,
            cost_usd=cost,
            audio_in_s=book.audio_in_s,
            audio_out_s=book.audio_out_ms / 1000.0,
            reconnects=self._reconnects,
            camera_tokens=camera,
            screen_tokens=screen,
            camera_frames=book.camera_frames,
            screen_frames=book.screen_frames,
        )
