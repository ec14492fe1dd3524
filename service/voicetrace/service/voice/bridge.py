"""One client WebSocket ⇄ one live model session, traced end to end.

`voice.start.serve_voice_session` claims the session and builds its model and trace; the
`VoiceBridge` then runs two loops per connection — client frames → model, model events → client —
plus one task per tool call, so tools never stall the audio. Every model event is also reported
to the session's `SessionTrace` (through `voice.trace_calls`, which the replay bench calls too);
telemetry calls are fail-open and cheap, so they sit inline.
Turn summaries reach the client, the budget and the store when the telemetry says a turn's usage
is *settled* (on time or late), so all three see the numbers on the turn's `chat` span.
Whatever ends the session, the first `Outcome` recorded wins and `_finish` ends the trace, the
stored session and the socket, in that order.

Long because: the two loops of one connection share its state (pause, rate limits, the
speaking turn, the outcome); split further, each half would reach into the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from voicetrace.service.sessions.errors import InvalidTransition
from voicetrace.service.sessions.schemas import Budgets, LiveSession
from voicetrace.service.voice import events as ev
from voicetrace.service.voice import trace_calls
from voicetrace.service.voice.audio import pcm16_duration_s
from voicetrace.service.voice.budget import (
    FRAME_METRICS,
    BudgetCheck,
    BudgetMetric,
    BudgetTracker,
    StreamedAudio,
    StreamedFrames,
    most_urgent,
)
from voicetrace.service.voice.deps import BridgeDeps
from voicetrace.service.voice.hub import BUDGET_EXHAUSTED
from voicetrace.service.voice.limits import TokenBucket, estimated_text_tokens
from voicetrace.service.voice.live_model import LiveModel
from voicetrace.service.voice.outcome import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    Closing,
    Outcome,
    closing,
)
from voicetrace.service.voice.protocol import (
    INPUT_SAMPLE_RATE,
    OUTPUT_SAMPLE_RATE,
    PROTOCOL_VERSION,
    ActivityEnd,
    ActivityStart,
    AudioEnd,
    ClientMessage,
    End,
    Playback,
    ProtocolError,
    TextInput,
    VideoFrame,
    check_audio_frame,
    parse_client_text,
    server_message,
)
from voicetrace.service.voice.turn_reports import TurnReports
from voicetrace.service.voice.video import (
    FrameRates,
    decode_frame,
    max_text_bytes,
    tokens_per_frame,
)
from voicetrace.telemetry import (
    EndReason,
    SessionTrace,
    TurnSummary,
)
from voicetrace.telemetry.frames import FrameSource

log = logging.getLogger(__name__)


class VoiceBridge:
    """One live session's loops. Built by `voice.start`, which sets `trace` before `run()`."""

    trace: SessionTrace

    def __init__(
        self, ws: WebSocket, session: LiveSession, deps: BridgeDeps, model: LiveModel
    ) -> None:
        self.ws, self.deps, self.model = ws, deps, model
        self.session_id, self.user_id = session.id, session.user_id
        self.finished = asyncio.Event()
        self._settings = settings = deps.settings
        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._outcome: Outcome | None = None
        self._paused = False
        self._bad_frames = 0
        self._frames = TokenBucket(settings.max_frames_per_s, settings.max_frames_per_s)
        # Audio may arrive faster than real time (buffered after a network hiccup), not forever:
        # every second of it is billed by Gemini.
        self._audio = TokenBucket(settings.max_audio_speed, settings.audio_burst_s)
        per_minute = settings.max_text_tokens_per_minute
        self._text_tokens = TokenBucket(per_minute / 60.0, per_minute / 4.0)
        self._video = FrameRates(settings.max_video_fps)
        # Text frames carry JSON control messages and base64 camera/screen images.
        self._max_text = max(
            settings.max_frame_bytes, max_text_bytes(settings.max_video_frame_bytes)
        )
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._non_blocking = trace_calls.non_blocking_tools(deps.tools)  # as declared at connect
        self._background: set[asyncio.Task[None]] = set()
        self._speaking_turn: int | None = None
        self._budget = BudgetTracker.for_budgets(session.budgets, settings.budget_warn_ratio)
        # The usage ledger and the user's daily budgets (every settled turn, exactly once).
        policy = deps.budgets
        self._daily = policy.for_session(session, settings.model) if policy else None
        self._streamed = StreamedAudio()  # a monologue is checked while it lasts
        # … and so is a screen share (frames at the session's media resolution)
        self._frames_out = StreamedFrames(
            tokens_per_frame(settings.model, settings.media_resolution)
        )
        self.reports = TurnReports(
            settings.usage_wait_s,
            send_summary=self._send_turn_summary,
            count_settled=self._count_settled,
            record=self._daily.record if self._daily is not None else None,
        )

    # -- control from outside (hub) -------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """End this session from outside (server shutdown, REST end)."""
        self._close(Outcome.stopped(reason))
        self._stopped.set()

    def set_budgets(self, budgets: Budgets) -> None:
        """Budget limits changed over REST: they apply from the next turn on."""
        self._budget = self._budget.with_budgets(budgets)
        if self._daily is not None:
            self._daily.budgets = budgets

    def set_paused(self, paused: bool, reason: str) -> None:
        """Pause or resume from outside (REST); the client hears of it right away."""
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            self._spawn(self._send("session_paused", reason=reason))
        else:
            self._spawn(self._send("session_resumed"))

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.deps.hub.add(self)
        try:
            if await self._connect_model():
                settings = self._settings
                await self._send(
                    "session_started",
                    session_id=self.session_id,
                    protocol_version=PROTOCOL_VERSION,
                    model=settings.model,
                    input_sample_rate=INPUT_SAMPLE_RATE,
                    output_sample_rate=OUTPUT_SAMPLE_RATE,
                )
                if self._budget.exhausted is not None:  # a limit of 0 allows nothing
                    await self._apply_budget(self._budget.exhausted)
                await self._pump()
        except Exception:
            log.exception("voice bridge failed", extra={"session_id": self.session_id})
            self._close(Outcome(EndReason.INTERNAL_ERROR, CLOSE_INTERNAL, "internal error"))
        finally:
            await self._finish()

    def _close(self, outcome: Outcome) -> None:
        """Record how the session ends; the first outcome wins."""
        if self._outcome is None:
            self._outcome = outcome

    async def _connect_model(self) -> bool:
        trace = self.trace
        trace.connect_started()
        connect = asyncio.ensure_future(
            asyncio.wait_for(self.model.connect(), self._settings.model_connect_timeout_s)
        )
        stopped = asyncio.ensure_future(self._stopped.wait())
        await asyncio.wait({connect, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not connect.done():  # shutdown or REST end while connecting: do not wait for it
            connect.cancel()
            with contextlib.suppress(BaseException):
                await connect
            trace.connect_finished(error="abandoned: the session ended while connecting")
            return False
        try:
            connect.result()
        except Exception as exc:  # typed adapter errors carry a close code and reason
            reason = _describe(exc)
            trace.connect_finished(error=reason)
            await self._send("error", code="model_unavailable", message=reason)
            self._close(Outcome(EndReason.MODEL_ERROR, CLOSE_INTERNAL, "model unavailable"))
            return False
        trace.connect_finished()
        return True

    async def _pump(self) -> None:
        name = self.session_id
        tasks = {
            asyncio.create_task(self._client_loop(), name=f"client:{name}"),
            asyncio.create_task(self._model_loop(), name=f"model:{name}"),
            asyncio.create_task(self.reports.run(), name=f"reports:{name}"),
            asyncio.create_task(self._stopped.wait(), name=f"stop:{name}"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, Closing):
                self._close(exc.outcome)
            elif exc is not None:
                raise exc

    async def _finish(self) -> None:
        deps = self.deps
        outcome = self._outcome or Outcome(EndReason.COMPLETED)
        for task in self._tool_tasks.values():
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.model.close(), 2.0)
        summary = self.trace.end(outcome.end_reason)
        await self.reports.finish()
        # Shielded: a cancelled bridge must never leave a write (and SQLite) half done.
        try:
            await asyncio.shield(
                deps.store.end(self.session_id, self.user_id, reason=outcome.end_reason)
            )
        except InvalidTransition:
            pass  # already ENDED: REST ended it, which is what stopped us
        except Exception:
            log.exception("could not store the end of session %s", self.session_id)
        if summary is not None:
            try:
                await asyncio.shield(deps.store.record_summary(self.session_id, summary))
            except Exception:
                log.exception("could not store the summary of session %s", self.session_id)
        await self._send(
            "session_ended",
            reason=outcome.end_reason.value,
            summary=summary.to_json() if summary is not None else {},
        )
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(outcome.code, outcome.message)
        deps.hub.discard(self)
        self.finished.set()
        # Spans are exported on the telemetry's own flusher thread, never the loop's pool.
        deps.telemetry.flush_soon(self._settings.flush_timeout_s)

    # -- client → model ---------------------------------------------------------------------------

    async def _client_loop(self) -> None:
        ws, settings = self.ws, self._settings
        while True:
            try:
                message = await ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                raise closing(EndReason.CLIENT_DISCONNECT) from None
            if message["type"] == "websocket.disconnect":
                raise closing(EndReason.CLIENT_DISCONNECT)
            if not self._frames.take():
                flood = f"more than {settings.max_frames_per_s} frames per second"
                raise closing(EndReason.RATE_LIMITED, CLOSE_POLICY, flood)
            data, text = message.get("bytes"), message.get("text")
            try:
                if data is not None:
                    await self._on_audio(data)
                elif text is not None:
                    if len(text) > self._max_text:
                        raise ProtocolError(
                            "frame_too_large", f"text frame exceeds {self._max_text} bytes"
                        )
                    await self._on_client_message(parse_client_text(text))
            except ProtocolError as exc:
                # Far over its kind's limit (audio, or text that may carry an image) is abuse.
                size, limit = (
                    (len(data), settings.max_frame_bytes)
                    if data is not None
                    else (len(text or ""), self._max_text)
                )
                await self._reject(exc, far_over=size > 4 * limit)
            except ValueError as exc:  # the adapter refused the input itself
                await self._reject(ProtocolError("invalid_input", str(exc)), far_over=False)

    async def _reject(self, exc: ProtocolError, far_over: bool) -> None:
        settings = self._settings
        if far_over:
            raise closing(EndReason.PROTOCOL_ABUSE, CLOSE_TOO_BIG, "frame far over the size limit")
        await self._send("error", code=exc.code, message=exc.message)
        if exc.throttled:
            return  # input over a rate is dropped, not invalid: a 3 fps camera is no attacker
        self._bad_frames += 1
        if self._bad_frames > settings.max_bad_frames:
            raise closing(EndReason.PROTOCOL_ABUSE, CLOSE_POLICY, "too many invalid frames")

    async def _on_audio(self, frame: bytes) -> None:
        check_audio_frame(frame, self._settings.max_frame_bytes)
        if self._paused:
            return  # a paused session is not billed: its audio goes nowhere
        seconds = pcm16_duration_s(len(frame), INPUT_SAMPLE_RATE)
        if not self._audio.take(seconds):
            limit = f"audio faster than {self._settings.max_audio_speed:g}x real time"
            raise closing(EndReason.RATE_LIMITED, CLOSE_POLICY, limit)
        trace_calls.user_audio(self.trace, frame, seconds)
        if self._streamed.add(seconds):
            self._spawn(self._project_audio())
        await self.model.send_audio(frame)

    async def _on_video(self, msg: VideoFrame) -> None:
        image = decode_frame(msg, self._settings.max_video_frame_bytes)
        self._video.check(msg.source)
        if self._paused:
            return  # as audio: a paused session's frames go nowhere and are not billed
        self.trace.video_frame(msg.source, self._frames_out.tokens_per_frame)
        if self._frames_out.add(msg.source):
            self._spawn(self._project_frames(msg.source))
        await self.model.send_video(image, msg.mime_type)

    async def _on_client_message(self, msg: ClientMessage) -> None:
        trace, model = self.trace, self.model
        match msg:
            case Playback(event=event, turn=turn, played_ms=played_ms):
                trace.playback(turn, event, played_ms)
            case End():
                raise closing(EndReason.COMPLETED)
            case VideoFrame():
                await self._on_video(msg)
            case _ if self._paused:
                message = "the session is paused; input is ignored"
                await self._send("error", code="session_paused", message=message)
            case TextInput(text=text):
                tokens = estimated_text_tokens(text)
                if not self._text_tokens.take(tokens):
                    limit = self._settings.max_text_tokens_per_minute
                    raise ProtocolError(
                        "rate_limited",
                        f"typed input over {limit} tokens per minute (~4 characters per token); "
                        "this text was not sent",
                        throttled=True,
                    )
                trace.user_text(text)
                await model.send_text(text)
            case AudioEnd():
                trace.audio_stream_end()
                await model.send_audio_end()
            case ActivityStart() | ActivityEnd() if self._settings.automatic_activity_detection:
                # Gemini closes the whole session (1007) on activity markers while its own voice
                # detection is on; refuse them here so one bad client frame cannot do that.
                raise ProtocolError(
                    "activity_detection_automatic",
                    "activity_start/activity_end need server voice detection turned off "
                    "(VOICETRACE_AUTOMATIC_ACTIVITY_DETECTION=false)",
                )
            case ActivityStart():
                trace.user_activity("start")
                await model.send_activity_start()
            case ActivityEnd():
                trace.user_activity("end")
                await model.send_activity_end()

    # -- model → client ---------------------------------------------------------------------------

    async def _model_loop(self) -> None:
        trace, non_blocking = self.trace, self._non_blocking
        async for event in self.model.events():
            # The telemetry first (the bench replays exactly this), then the client's side.
            closed = trace_calls.model_event(trace, event, non_blocking)
            match event:
                case ev.AudioOut(data=data):
                    if trace.current_turn != self._speaking_turn:
                        # Binary frames carry no turn number: announce whose audio follows.
                        self._speaking_turn = trace.current_turn
                        await self._send("response_started", turn=self._speaking_turn)
                    await self._deliver(data)
                case ev.TextOut(text=text, thought=thought):
                    if not thought:
                        await self._send_transcript("model", text, final=False)
                case ev.InputTranscript(text=text, finished=finished):
                    await self._send_transcript("user", text, final=finished)
                case ev.OutputTranscript(text=text, finished=finished):
                    await self._send_transcript("model", text, final=finished)
                case ev.ToolCall(calls=calls):
                    for call in calls:
                        self._start_tool(call)
                case ev.ToolCallCancellation(ids=ids):
                    for call_id in ids:
                        task = self._tool_tasks.pop(call_id, None)
                        if task is not None:
                            task.cancel()
                case ev.Interrupted():
                    # The cut turn is still the current one until the server completes it.
                    await self._send("interrupted", turn=trace.current_turn)
                case ev.TurnComplete():
                    self.reports.turn_closed(closed)
                case ev.ModelError(code=code, reason=reason):
                    message = f"model session failed ({code}): {reason}"
                    await self._send("error", code="model_error", message=message)
                    raise closing(EndReason.MODEL_ERROR, CLOSE_INTERNAL, "model session failed")
        if not self._stopped.is_set():
            raise closing(EndReason.MODEL_ERROR, CLOSE_INTERNAL, "model session closed")

    # -- settled turns → client, budget -----------------------------------------------------------

    async def _send_turn_summary(self, summary: TurnSummary) -> None:
        await self._send("turn_complete", **summary.to_json())

    async def _count_settled(self, summary: TurnSummary) -> None:
        """Persist the settled turn (a crash loses at most the turn in flight), then check the
        session's and the user's daily budgets."""
        try:
            # Shielded: the write completes even if the session ends meanwhile.
            await asyncio.shield(self.deps.store.record_settled_turn(self.session_id, summary))
        except Exception:
            log.exception("could not store turn %d of %s", summary.number, self.session_id)
        self._streamed.settled()
        self._frames_out.settled()
        check = self._budget.add_turn(summary)
        if self._daily is not None:  # the ledger already has the turn (TurnReports.record)
            check = most_urgent(check, await self._daily.check())
        await self._apply_budget(check)

    async def _project_audio(self) -> None:
        """Pause as soon as the audio streamed so far would use an audio budget up."""
        extra = self._streamed.minutes
        check = self._budget.projected(BudgetMetric.AUDIO_MINUTES, extra)
        if self._daily is not None:
            check = most_urgent(
                check, await self._daily.projected(BudgetMetric.AUDIO_MINUTES, extra)
            )
        await self._apply_budget(check)

    async def _project_frames(self, source: FrameSource) -> None:
        """Pause as soon as the frames forwarded so far would use a camera/screen budget up."""
        metric, extra = FRAME_METRICS[source], self._frames_out.tokens(source)
        check = self._budget.projected(metric, extra)
        if self._daily is not None:
            check = most_urgent(check, await self._daily.projected(metric, extra))
        await self._apply_budget(check)

    async def _apply_budget(self, check: BudgetCheck | None) -> None:
        if check is None:
            return
        if check.exhausted and not self._paused:
            self._paused = True
            try:
                # Shielded: the write finishes even if the session ends right now.
                await asyncio.shield(
                    self.deps.store.pause_for_budget(self.session_id, self.user_id, check.name)
                )
            except Exception:
                log.exception("could not store the budget pause of %s", self.session_id)
            self.trace.budget(True, **check.to_json())
            await self._send("session_paused", reason=BUDGET_EXHAUSTED, budget=check.to_json())
        elif check.warning:
            self.trace.budget(False, **check.to_json())
            await self._send("budget_warning", budget=check.to_json())

    # -- tools ------------------------------------------------------------------------------------

    def _start_tool(self, call: ev.FunctionCall) -> None:
        # The telemetry has the call already (trace_calls.model_event, from the ToolCall).
        task = asyncio.create_task(self._run_tool(call), name=f"tool:{call.name}:{call.id}")
        self._tool_tasks[call.id] = task
        task.add_done_callback(functools.partial(self._tool_done, call.id))

    def _tool_done(self, call_id: str, _task: asyncio.Task[None]) -> None:
        self._tool_tasks.pop(call_id, None)

    async def _run_tool(self, call: ev.FunctionCall) -> None:
        turn = self.trace.current_turn
        await self._send("tool_call", turn=turn, call_id=call.id, name=call.name, args=call.args)
        outcome = await self.deps.tools.run(call)
        trace_calls.tool_outcome(self.trace, outcome)
        await self._send(
            "tool_result",
            turn=turn,
            call_id=call.id,
            name=call.name,
            ok=outcome.error is None,
            error=outcome.error,
            duration_ms=round(outcome.duration_s * 1000, 1),
        )
        await self.model.send_tool_results([self.deps.tools.result_for(outcome)])

    # -- sending ----------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_transcript(self, role: str, text: str, final: bool) -> None:
        turn = self.trace.current_turn
        await self._send("transcript", role=role, text=text, final=final, turn=turn)

    async def _send(self, type_: str, **fields: object) -> None:
        await self._deliver(server_message(type_, **fields))

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
