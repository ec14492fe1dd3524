"""One traced google-genai Live connection: what the instrumentor's wrappers report, and where.

`LiveTrace` holds one voice session's `SessionTrace` and the little state the SDK does not
keep for us: the NON_BLOCKING function names (from the connect config), the last resumable
handle, whether the server said `goAway`, and typed text waiting for its `turn_complete`.
Server messages go through the shared mapping (`genai_mapping.map_message` →
`record.record_event`), the same code path as the service's model adapter; the app's inputs
are read by `genai_inputs`. Every method here is called inside the instrumentor's fail-open
guard and never sees an exception of the app's.

Turns come from Gemini's own signals only (no local VAD): voiced input frames, typed text,
activity markers, `interrupted`, `turnComplete`, exactly as in the service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import websockets
from google.genai import errors
from voicetrace.telemetry.instrumentation import events as ev
from voicetrace.telemetry.instrumentation import genai_inputs as gi
from voicetrace.telemetry.instrumentation.audio import is_voiced
from voicetrace.telemetry.instrumentation.genai_mapping import (
    audio_only,
    close_info,
    is_retryable,
    map_message,
)
from voicetrace.telemetry.instrumentation.record import record_event
from voicetrace.telemetry.records import EndReason
from voicetrace.telemetry.session import SessionTrace

# What `receive()` raises when the connection ends: the SDK turns close frames into APIError
# (even a normal 1000 after goAway), websockets and the OS raise the rest.
CONNECTION_ERRORS = (errors.APIError, websockets.ConnectionClosed, OSError)


# Models on which a function declared without a behaviour is NON_BLOCKING (the GA 3.8 Live
# models; BLOCKING elsewhere). Frameworks rarely say: ADK's FunctionTool and Pipecat's
# FunctionSchema leave it unset.
NON_BLOCKING_BY_DEFAULT = frozenset({"gemini-3.8-live", "gemini-3.8-live-extended-thinking"})


def non_blocking_functions(config: object, model: str = "") -> frozenset[str]:
    """Names of the NON_BLOCKING functions a `LiveConnectConfig` (or its dict) declares for
    `model`, explicitly or by the model's default."""
    default = "NON_BLOCKING" if model.removeprefix("models/") in NON_BLOCKING_BY_DEFAULT else None
    names = set()
    for tool in gi.field(config, "tools") or ():
        for decl in gi.field(tool, "function_declarations") or ():
            behavior = gi.field(decl, "behavior")
            # `types.Behavior` is a case-insensitive enum: a dict config's "non_blocking" goes
            # on the wire as NON_BLOCKING, so it is compared upper-cased.
            value = getattr(behavior, "value", behavior)
            value = str(value).upper() if value is not None else None
            value = default if value in (None, "UNSPECIFIED") else value
            if value == "NON_BLOCKING" and gi.field(decl, "name"):
                names.add(str(gi.field(decl, "name")))
    return frozenset(names)


def resumption_handle(config: object) -> str | None:
    """The handle a connect config resumes from, if any."""
    handle = gi.field(gi.field(config, "session_resumption"), "handle")
    return handle if isinstance(handle, str) and handle else None


def system_prompt(config: object) -> str | None:
    """The system instruction's text (a string, a Content, or parts)."""
    value = gi.field(config, "system_instruction")
    if value is None or isinstance(value, str):
        return value
    parts = gi.field(value, "parts") or (value if isinstance(value, list) else ())
    texts = [t for p in parts if isinstance(t := gi.field(p, "text") or p, str)]
    return "\n".join(texts) or None


class LiveTrace:
    """The trace of one live conversation, across the connections that resume it."""

    def __init__(self, trace: SessionTrace, config: object, model: str = "") -> None:
        self.trace = trace
        self.non_blocking = non_blocking_functions(config, model)
        self.handle: str | None = None  # last resumable handle the server gave
        self.go_away = False
        self.lost: str | None = None  # "go_away" / "connection_lost" once the socket is gone
        self.lost_ns = 0
        self.failed = False  # a model error was recorded: the session ends as model_error
        self.connections = 0  # open connections of this conversation (2 while switching)
        self.current: object | None = None  # the newest connection's AsyncSession
        self._pending_text: str | None = None  # client_content(turn_complete=False) so far

    # -- server → app -----------------------------------------------------------------------
    def on_message(self, msg: Any) -> None:
        trace, nb = self.trace, self.non_blocking
        chunk = audio_only(msg)
        if chunk is not None:  # the common case: what record_event does for these events
            nbytes, rate, transcript = chunk
            if transcript:
                trace.output_transcript(transcript)
            trace.model_audio(nbytes, rate)
            return
        for event in map_message(msg):
            kind = type(event)
            if kind is ev.GoAway:
                self.go_away = True
            elif kind is ev.ResumptionHandle and event.resumable:  # type: ignore[union-attr]
                self.handle = event.handle  # type: ignore[union-attr]
            record_event(trace, event, nb)

    def on_receive_error(self, exc: BaseException) -> None:
        """`receive()` raised: a resumable loss waits for the app to reconnect; anything else
        is the session's model error."""
        if self.lost is not None or self.failed:
            return
        code, reason = close_info(exc)
        if self.handle is not None and is_retryable(code, exc):
            self.lost = "go_away" if self.go_away else "connection_lost"
            self.lost_ns = time.monotonic_ns()
            return
        self.failed = True
        record_event(self.trace, ev.ModelError(code, reason), self.non_blocking)

    # -- app → server -----------------------------------------------------------------------
    def on_realtime_input(self, kwargs: Mapping[str, Any], at_ns: int) -> None:
        trace = self.trace
        for name in ("audio", "media"):
            chunk = gi.audio_chunk(kwargs.get(name))
            if chunk is not None:
                self._audio(chunk, at_ns)
        if kwargs.get("audio_stream_end"):
            trace.audio_stream_end()
        text = kwargs.get("text")
        # A blank text is not something the user said: Pipecat sends `text=" "` after
        # client_content(turn_complete=True) to make Gemini 3.x answer the turn already begun.
        if isinstance(text, str) and text.strip():
            trace.user_text(text, at_ns)
        if kwargs.get("activity_start") is not None:
            trace.user_activity("start")
        if kwargs.get("activity_end") is not None:
            trace.user_activity("end")

    def on_client_content(self, turns: object, turn_complete: bool, at_ns: int) -> None:
        text = gi.user_text(turns)
        if text is not None:
            self._pending_text = text if self._pending_text is None else self._pending_text + text
        if turn_complete:
            # Gemini starts the turn at the first turn_complete, even a bare one after text
            # sent with turn_complete=False (how Pipecat and LiveKit Agents send typed input).
            pending, self._pending_text = self._pending_text, None
            self.trace.user_text(pending or "", at_ns)

    def on_tool_response(self, responses: object) -> None:
        for result in gi.function_results(responses):
            self.trace.tool_result(result.call_id, result.response, error=result.error)

    def on_send(self, value: object, end_of_turn: bool, at_ns: int) -> None:
        sent = gi.send_input(value, end_of_turn)
        for chunk in sent.audio:
            self._audio(chunk, at_ns)
        for result in sent.results:
            self.trace.tool_result(result.call_id, result.response, error=result.error)
        if sent.text is not None or sent.turn_complete:
            turns = sent.text
            self.on_client_content(turns, sent.turn_complete, at_ns)

    def _audio(self, chunk: gi.AudioChunk, at_ns: int) -> None:
        pcm = chunk.pcm
        self.trace.user_audio(len(pcm) / (2 * chunk.sample_rate), is_voiced(pcm), at_ns)

    # -- connection life ----------------------------------------------------------------------
    def resumed(self, resumed: bool) -> None:
        """A new connection continues this conversation (the app reconnected with our handle)."""
        downtime = (time.monotonic_ns() - self.lost_ns) / 1e9 if self.lost_ns else 0.0
        reason = self.lost or ("go_away" if self.go_away else "connection_lost")
        self.lost, self.lost_ns, self.go_away = None, 0, False
        record_event(
            self.trace,
            ev.Reconnected(reason, downtime, resumed),  # type: ignore[arg-type]
            self.non_blocking,
        )

    def end_reason(self, exc: BaseException | None) -> EndReason:
        """How the conversation ended when the app left `connect()` with `exc` (or none)."""
        if self.failed:
            return EndReason.MODEL_ERROR
        if exc is None or isinstance(exc, CONNECTION_ERRORS):
            return EndReason.MODEL_ERROR if self.lost == "connection_lost" else EndReason.COMPLETED
        if isinstance(exc, asyncio.CancelledError):
            return EndReason.CLIENT_DISCONNECT  # the app cancelled its task: the user left
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            return EndReason.SERVER_SHUTDOWN
        return EndReason.INTERNAL_ERROR  # the app's own code failed inside the session

    @property
    def resumable(self) -> bool:
        """Left in a way the app can resume from: after the server's goAway (the app may
        reconnect before the server closes) or a retryable drop, with a handle to resume."""
        if self.handle is None:
            return False
        if self.lost is None and self.go_away:
            self.lost, self.lost_ns = "go_away", time.monotonic_ns()
        return self.lost is not None
