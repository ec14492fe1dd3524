"""One client WebSocket ⇄ one Gemini Live session, traced end to end.

The bridge runs two loops per connection — client frames → model, model events → client — plus one
task per tool call, so tools never stall the audio. Every model event is also reported to the
session's `SessionTrace`; telemetry calls are fail-open and cheap, so they sit inline.
Whatever ends the session (client end or disconnect, model error, budget, server shutdown), the
`finally` in `run()` ends the trace, the stored session and the socket, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from voicetrace.service.sessions.errors import InvalidTransition
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.settings import Settings
from voicetrace.service.voice import events as ev
from voicetrace.service.voice.audio import is_voiced, pcm16_duration_s
from voicetrace.service.voice.budget import BudgetCheck, BudgetTracker
from voicetrace.service.voice.hub import VoiceHub
from voicetrace.service.voice.model import GeminiLive, LiveModelConfig
from voicetrace.service.voice.protocol import (
    INPUT_SAMPLE_RATE,
    OUTPUT_SAMPLE_RATE,
    PROTOCOL_VERSION,
    ActivityEnd,
    ActivityStart,
    AudioEnd,
    End,
    Playback,
    ProtocolError,
    TextInput,
    check_audio_frame,
    parse_client_text,
    server_message,
)
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.service.voice.usage import usage_snapshot
from voicetrace.telemetry import SessionInfo, SessionTrace, VoiceTelemetry

log = logging.getLogger(__name__)

# WebSocket close codes (RFC 6455 §7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011


@dataclass(frozen=True, slots=True)
class BridgeDeps:
    """What every bridge of one app shares; built once by the app factory."""

    settings: Settings
    store: Any  # voicetrace.service.sessions.store.SessionStore
    telemetry: VoiceTelemetry
    tools: ToolRegistry
    hub: VoiceHub


class _TokenBucket:
    """Allows `rate` units per second on average, `burst` at once (frames, or audio seconds)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= amount
        return self._tokens >= 0


class _Closing(Exception):
    """Raised inside a loop to end the session with a close code and reason."""

    def __init__(self, end_reason: str, code: int, message: str) -> None:
        super().__init__(message)
        self.end_reason, self.code, self.message = end_reason, code, message


class VoiceBridge:
    def __init__(self, ws: WebSocket, session: Any, deps: BridgeDeps) -> None:
        self.ws = ws
        self.session = session
        self.session_id: str = session.id
        self.user_id: str = session.user_id
        self.deps = deps
        self.finished = asyncio.Event()
        self._settings = deps.settings
        self._send_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._stop_reason = "server_shutdown"
        self._end_reason = "completed"
        self._close_code = CLOSE_NORMAL
        self._close_message = ""
        self._paused = False
        self._bad_frames = 0
        self._frames = _TokenBucket(
            self._settings.max_frames_per_s, self._settings.max_frames_per_s
        )
        # Audio may arrive faster than real time (buffered after a network hiccup), not forever:
        # every second of it is billed by Gemini.
        self._audio = _TokenBucket(self._settings.max_audio_speed, self._settings.audio_burst_s)
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._speaking_turn: int | None = None
        self._model: GeminiLive | None = None
        self._trace: SessionTrace | None = None
        self._budget = BudgetTracker.from_session(session, warn_at=self._settings.budget_warn_ratio)

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """End this session from outside (server shutdown, REST end)."""
        self._stop_reason = reason
        self._stop.set()

    def set_budgets(self, session: Any) -> None:
        """Budget limits changed over REST: they apply from the next turn on."""
        self._budget = self._budget.with_limits_of(session)

    def set_paused(self, paused: bool, reason: str) -> None:
        """Pause or resume from outside (REST); the client hears of it right away."""
        if paused == self._paused:
            return
        self._paused = paused
        message = ("session_paused", {"reason": reason}) if paused else ("session_resumed", {})
        task = asyncio.get_running_loop().create_task(self._send(message[0], **message[1]))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self) -> None:
        settings, deps = self._settings, self.deps
        try:
            await deps.store.transition(
                self.session_id,
                self.user_id,
                SessionState.LIVE,
                only_from={SessionState.CONNECTING},
            )
        except InvalidTransition as exc:  # another connection won the race for this session
            await self.ws.close(CLOSE_POLICY, f"session is {exc.current.value}, not CONNECTING")
            self.finished.set()
            return
        deps.hub.add(self)
        try:
            self._model = GeminiLive(self._model_config())
            host, port = self._model.endpoint
            self._trace = deps.telemetry.start_session(
                SessionInfo(
                    session_id=self.session_id,
                    user_id=self.user_id,
                    model=settings.model,
                    agent_name=settings.agent_name,
                    recording_consent=bool(self.session.recording_consent),
                    secrets_blurred=tuple(self.session.secrets_blurred or ()),
                    system_prompt=settings.system_prompt,
                    tags=(f"mode:{self.session.mode}",) if self.session.mode else (),
                    environment=settings.environment,
                    server_address=host,
                    server_port=port,
                )
            )
            if await self._connect_model():
                await self._send(
                    "session_started",
                    session_id=self.session_id,
                    protocol_version=PROTOCOL_VERSION,
                    model=settings.model,
                    input_sample_rate=INPUT_SAMPLE_RATE,
                    output_sample_rate=OUTPUT_SAMPLE_RATE,
                )
                await self._pump()
        except Exception:
            log.exception("voice bridge failed", extra={"session_id": self.session_id})
            self._end_reason, self._close_code = "internal_error", CLOSE_INTERNAL
            self._close_message = "internal error"
        finally:
            await self._finish()

    def _model_config(self) -> LiveModelConfig:
        settings = self._settings
        return LiveModelConfig(
            model=settings.model,
            voice=settings.voice,
            system_prompt=settings.system_prompt,
            tools=tuple(self.deps.tools.specs()),
            silence_duration_ms=settings.silence_duration_ms,
            automatic_activity_detection=settings.automatic_activity_detection,
            api_key=(
                settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else None
            ),
            connect_timeout_s=settings.model_connect_timeout_s,
        )

    async def _connect_model(self) -> bool:
        settings = self._settings
        self._trace.connect_started()
        connect = asyncio.ensure_future(
            asyncio.wait_for(self._model.connect(), settings.model_connect_timeout_s)
        )
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({connect, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not connect.done():  # shutdown or REST end while connecting: do not wait for it
            connect.cancel()
            with contextlib.suppress(BaseException):
                await connect
            self._trace.connect_finished(error="abandoned: the session ended while connecting")
            self._end_reason = self._stop_reason
            self._close_code = (
                CLOSE_GOING_AWAY if self._stop_reason == "server_shutdown" else CLOSE_NORMAL
            )
            return False
        try:
            connect.result()
        except Exception as exc:  # typed adapter errors carry a close code and reason
            reason = _describe(exc)
            self._trace.connect_finished(error=reason)
            await self._send("error", code="model_unavailable", message=reason)
            self._end_reason, self._close_code, self._close_message = (
                "model_error",
                CLOSE_INTERNAL,
                "model unavailable",
            )
            return False
        self._trace.connect_finished()
        return True

    async def _pump(self) -> None:
        client = asyncio.create_task(self._client_loop(), name=f"client:{self.session_id}")
        model = asyncio.create_task(self._model_loop(), name=f"model:{self.session_id}")
        stop = asyncio.create_task(self._stop.wait(), name=f"stop:{self.session_id}")
        try:
            done, _ = await asyncio.wait({client, model, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (client, model, stop):
                task.cancel()
        if stop in done:
            self._end_reason = self._stop_reason
            self._close_code = (
                CLOSE_GOING_AWAY if self._stop_reason == "server_shutdown" else CLOSE_NORMAL
            )
            return
        for task in done:
            with contextlib.suppress(asyncio.CancelledError):
                exc = task.exception()
                if isinstance(exc, _Closing):
                    self._end_reason, self._close_code, self._close_message = (
                        exc.end_reason,
                        exc.code,
                        exc.message,
                    )
                elif exc is not None:
                    raise exc

    async def _finish(self) -> None:
        deps = self.deps
        for task in self._tool_tasks.values():
            task.cancel()
        if self._model is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._model.close(), 2.0)
        summary: dict[str, Any] = {}
        if self._trace is not None:
            ended = self._trace.end(self._end_reason)
            summary = ended.as_dict() if ended is not None else {}
        with contextlib.suppress(Exception):
            await deps.store.end(self.session_id, self.user_id, reason=self._end_reason)
        with contextlib.suppress(Exception):
            await deps.store.record_summary(self.session_id, summary)
        await self._send("session_ended", reason=self._end_reason, summary=summary)
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(self._close_code, self._close_message)
        deps.hub.discard(self)
        self.finished.set()
        # Flush this session's spans off the event loop, bounded in wall time.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(deps.telemetry.force_flush, self._settings.flush_timeout_s)

    # -- client → model ---------------------------------------------------------------------------

    async def _client_loop(self) -> None:
        ws, settings = self.ws, self._settings
        while True:
            try:
                message = await ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                raise _Closing("client_disconnect", CLOSE_NORMAL, "") from None
            if message["type"] == "websocket.disconnect":
                raise _Closing("client_disconnect", CLOSE_NORMAL, "")
            if not self._frames.take():
                raise _Closing(
                    "rate_limited",
                    CLOSE_POLICY,
                    f"more than {settings.max_frames_per_s} frames per second",
                )
            data, text = message.get("bytes"), message.get("text")
            try:
                if data is not None:
                    await self._on_audio(data)
                elif text is not None:
                    if len(text) > settings.max_frame_bytes:
                        raise ProtocolError(
                            "frame_too_large",
                            f"text frame exceeds {settings.max_frame_bytes} bytes",
                        )
                    await self._on_client_message(parse_client_text(text))
            except ProtocolError as exc:
                await self._reject(exc, size=len(data if data is not None else text or ""))
            except ValueError as exc:  # the adapter refused the input itself
                await self._reject(ProtocolError("invalid_input", str(exc)), size=0)

    async def _reject(self, exc: ProtocolError, size: int) -> None:
        settings = self._settings
        if size > 4 * settings.max_frame_bytes:
            raise _Closing("protocol_abuse", CLOSE_TOO_BIG, "frame far over the size limit")
        self._bad_frames += 1
        await self._send("error", code=exc.code, message=exc.message)
        if self._bad_frames > settings.max_bad_frames:
            raise _Closing("protocol_abuse", CLOSE_POLICY, "too many invalid frames")

    async def _on_audio(self, frame: bytes) -> None:
        check_audio_frame(frame, self._settings.max_frame_bytes)
        if self._paused:
            return  # a paused session is not billed: its audio goes nowhere
        seconds = pcm16_duration_s(len(frame), INPUT_SAMPLE_RATE)
        if not self._audio.take(seconds):
            raise _Closing(
                "rate_limited",
                CLOSE_POLICY,
                f"audio faster than {self._settings.max_audio_speed:g}x real time",
            )
        self._trace.user_audio(seconds, is_voiced(frame))
        await self._model.send_audio(frame)

    async def _on_client_message(self, msg: object) -> None:
        match msg:
            case Playback(event=event, turn=turn, played_ms=played_ms):
                self._trace.playback(turn, event, played_ms)
            case End():
                raise _Closing("completed", CLOSE_NORMAL, "")
            case _ if self._paused:
                await self._send(
                    "error",
                    code="session_paused",
                    message="the session is paused; input is ignored",
                )
            case TextInput(text=text):
                self._trace.user_text(text)
                await self._model.send_text(text)
            case AudioEnd():
                self._trace.audio_stream_end()
                await self._model.send_audio_end()
            case ActivityStart() | ActivityEnd() if self._settings.automatic_activity_detection:
                # Gemini closes the whole session (1007) on activity markers while its own voice
                # detection is on; refuse them here so one bad client frame cannot do that.
                raise ProtocolError(
                    "activity_detection_automatic",
                    "activity_start/activity_end need server voice detection turned off "
                    "(VOICETRACE_AUTOMATIC_ACTIVITY_DETECTION=false)",
                )
            case ActivityStart():
                self._trace.user_activity("start")
                await self._model.send_activity_start()
            case ActivityEnd():
                self._trace.user_activity("end")
                await self._model.send_activity_end()

    # -- model → client ---------------------------------------------------------------------------

    async def _model_loop(self) -> None:
        trace = self._trace
        async for event in self._model.events():
            match event:
                case ev.AudioOut(data=data, sample_rate=rate):
                    trace.model_audio(len(data), rate)
                    if trace.current_turn != self._speaking_turn:
                        # Binary frames carry no turn number: announce whose audio follows.
                        self._speaking_turn = trace.current_turn
                        await self._send("response_started", turn=self._speaking_turn)
                    await self._send_bytes(data)
                case ev.TextOut(text=text, thought=thought):
                    trace.model_text(text, thought=thought)
                    if not thought:
                        await self._send_transcript("model", text, final=False)
                case ev.InputTranscript(text=text, finished=finished):
                    trace.input_transcript(text, finished)
                    await self._send_transcript("user", text, final=finished)
                case ev.OutputTranscript(text=text, finished=finished):
                    trace.output_transcript(text)
                    await self._send_transcript("model", text, final=finished)
                case ev.ToolCall(calls=calls):
                    for call in calls:
                        self._start_tool(call)
                case ev.ToolCallCancellation(ids=ids):
                    trace.tool_cancelled(ids)
                    for call_id in ids:
                        task = self._tool_tasks.pop(call_id, None)
                        if task is not None:
                            task.cancel()
                case ev.Interrupted():
                    turn = trace.current_turn
                    trace.interrupted()
                    await self._send("interrupted", turn=turn)
                case ev.GenerationComplete():
                    trace.generation_complete()
                case ev.Usage():
                    trace.usage(usage_snapshot(event))
                case ev.TurnComplete():
                    await self._on_turn_complete()
                case ev.GoAway(time_left_s=left):
                    trace.go_away(left)
                case ev.ResumptionHandle(handle=handle):
                    trace.resumption_handle(handle)
                case ev.Reconnected(reason=reason, downtime_s=downtime, resumed=resumed):
                    trace.reconnected(reason, downtime, resumed)
                case ev.ModelError(code=code, reason=reason):
                    trace.model_error(code, reason)
                    await self._send(
                        "error",
                        code="model_error",
                        message=f"model session failed ({code}): {reason}",
                    )
                    raise _Closing("model_error", CLOSE_INTERNAL, "model session failed")
        if not self._stop.is_set():
            raise _Closing("model_error", CLOSE_INTERNAL, "model session closed")

    async def _on_turn_complete(self) -> None:
        summary = self._trace.turn_complete()
        if summary is None:
            return
        turn = summary.as_dict()
        await self._send("turn_complete", **turn)
        check = self._budget.add_turn(turn)
        await self._apply_budget(check)

    async def _apply_budget(self, check: BudgetCheck | None) -> None:
        if check is None:
            return
        if check.exhausted and not self._paused:
            self._paused = True
            with contextlib.suppress(Exception):
                await self.deps.store.transition(
                    self.session_id, self.user_id, SessionState.PAUSED, reason="budget_exhausted"
                )
            await self._send("session_paused", reason="budget_exhausted", budget=check.as_dict())
        elif check.warning:
            await self._send("budget_warning", budget=check.as_dict())

    # -- tools ------------------------------------------------------------------------------------

    def _start_tool(self, call: ev.FunctionCall) -> None:
        spec = self.deps.tools.spec(call.name)
        self._trace.tool_call(
            call.id, call.name, call.args, non_blocking=bool(spec and spec.non_blocking)
        )
        task = asyncio.create_task(self._run_tool(call), name=f"tool:{call.name}:{call.id}")
        self._tool_tasks[call.id] = task
        task.add_done_callback(lambda _t, call_id=call.id: self._tool_tasks.pop(call_id, None))

    async def _run_tool(self, call: ev.FunctionCall) -> None:
        turn = self._trace.current_turn
        await self._send("tool_call", turn=turn, call_id=call.id, name=call.name, args=call.args)
        outcome = await self.deps.tools.run(call)
        self._trace.tool_result(
            call.id, outcome.response, error=outcome.error, duration_s=outcome.duration_s
        )
        await self._send(
            "tool_result",
            turn=turn,
            call_id=call.id,
            name=call.name,
            ok=outcome.error is None,
            error=outcome.error,
            duration_ms=round(outcome.duration_s * 1000, 1),
        )
        await self._model.send_tool_results([self.deps.tools.result_for(outcome)])

    # -- sending ----------------------------------------------------------------------------------

    async def _send_transcript(self, role: str, text: str, final: bool) -> None:
        await self._send(
            "transcript", role=role, text=text, final=final, turn=self._trace.current_turn
        )

    async def _send(self, type_: str, **fields: Any) -> None:
        await self._deliver(server_message(type_, **fields))

    async def _send_bytes(self, data: bytes) -> None:
        await self._deliver(data)

    async def _deliver(self, payload: str | bytes) -> None:
        """Send to the client unless it is gone; a vanished client ends the session elsewhere."""
        if self.ws.application_state != WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            try:
                if isinstance(payload, bytes):
                    await self.ws.send_bytes(payload)
                else:
                    await self.ws.send_text(payload)
            except Exception:  # the peer vanished mid-send; the client loop sees the disconnect
                log.debug("send to a closed client dropped", extra={"session_id": self.session_id})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out connecting to the model"
    code = getattr(exc, "code", None)
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return f"{code}: {reason}" if code else reason
