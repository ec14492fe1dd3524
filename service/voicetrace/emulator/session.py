"""One Live connection: setup, user turns (text, VAD, manual activity), replies, tools, barge-in.

Concurrency: the read loop handles client messages in order; the model's output for a turn runs
as one `generation` task at a time, so a barge-in is "cancel that task, then report". A turn that
is already sending its `turnComplete` is never cancelled mid-way (`Turn.finishing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from voicetrace.emulator import assistant
from voicetrace.emulator.protocol import (
    CloseError,
    b64decode_any,
    b64encode,
    duration_json,
    has,
    pick,
)
from voicetrace.emulator.scenario import ScriptedTurn
from voicetrace.emulator.setup import LiveSetup, parse_setup
from voicetrace.emulator.state import Conversation, EmulatorState, ToolGroup, Turn
from voicetrace.emulator.synth import AUDIO_MIME, SpeechSynth, reply_chunks
from voicetrace.emulator.tokens import PREFIX, constrain
from voicetrace.emulator.usage import (
    INPUT_RATE,
    TurnUsage,
    audio_tokens,
    response_tokens,
    text_tokens,
)
from voicetrace.emulator.vad import Endpointer

log = logging.getLogger(__name__)

# Per-session bound on typed text kept for the assistant until turnComplete (tokens are counted
# in full regardless): a client that never completes a turn cannot grow the emulator.
MAX_PENDING_CHARS = 64 * 1024


def _newest(texts: list[str], limit: int) -> list[str]:
    """The newest texts whose total length fits in `limit` (the newest one cut if alone)."""
    kept: list[str] = []
    size = 0
    for text in reversed(texts):
        if size + len(text) > limit:
            if not kept:
                kept.append(text[-limit:])
            break
        kept.append(text)
        size += len(text)
    return kept[::-1]


class LiveSession:
    def __init__(self, ws: WebSocket, state: EmulatorState, version: str, method: str) -> None:
        self.ws = ws
        self.state = state
        self.scenario = state.scenario
        self.version = version
        self.constrained = method.endswith("Constrained")
        self.number = next(state.ids)
        self.conv = Conversation(id=self.number)
        self.setup: LiveSetup | None = None
        self.vad: Endpointer | None = None
        self.synth = SpeechSynth()
        self.generation: asyncio.Task[None] | None = None
        self.turn: Turn | None = None
        self.closed = False
        self._send_lock = asyncio.Lock()
        self._billed_samples = 0  # input samples already billed to a turn
        self._activity_samples: int | None = None  # manual activity: samples since activityStart
        self._pending_text = 0  # client_content without turnComplete, billed to the next turn
        self._pending_user: list[str] = []  # user texts since the last model turn, not answered
        self._blocking: dict[str, str] = {}  # call id → name, awaited by the current turn
        self._blocking_done: asyncio.Event = asyncio.Event()
        self._groups: dict[str, ToolGroup] = {}  # non-blocking call id → its group
        self._queued: list[Turn] = []  # WHEN_IDLE result turns waiting for the model to idle
        self._holding = False  # a barge-in is in progress: do not start queued turns
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        self.state.connections += 1
        self.state.sessions.add(self)
        try:
            await self._handshake()
            while True:
                await self._handle(await self._receive())
        except CloseError as exc:
            await self.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            self.state.sessions.discard(self)
            for task in [self.generation, *self._tasks]:
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            pending = [t for t in [self.generation, *self._tasks] if t is not None]
            if pending:
                await asyncio.wait(pending)

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.state.wire.record(self.number, "out", "close", None, 0, code, reason)
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    def go_away(self, time_left_s: float) -> None:
        """Announce the end of this connection, and close it (1000) once the time is up."""
        self._spawn(self._go_away(time_left_s))

    async def _go_away(self, time_left_s: float) -> None:
        await self.send({"goAway": {"timeLeft": duration_json(time_left_s)}})
        await asyncio.sleep(time_left_s)
        await self.close(1000, "The session was closed after goAway.")

    async def _go_away_at(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not self.closed:
            await self._go_away(self.scenario.go_away_time_left_s)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, WebSocketDisconnect):  # the client left mid-turn: expected
            log.debug("emulator task ended by a disconnect: %r", exc)
        else:  # a bug in a scripted turn must not look like a silent stall
            log.warning("emulator task failed", exc_info=exc)

    # -- frames --------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise WebSocketDisconnect(1006)
        data = json.dumps(message).encode()
        # The real service sends JSON as binary frames; the SDK decodes both.
        self.state.wire.record(self.number, "out", "binary", message, len(data))
        async with self._send_lock:
            await self.ws.send_bytes(data)

    async def _receive(self) -> dict[str, Any]:
        frame = await self.ws.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        raw = frame.get("text")
        kind = "text"
        if raw is None:
            raw, kind = frame.get("bytes") or b"", "binary"
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            message = None
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if not isinstance(message, dict):
            self.state.wire.record(self.number, "in", kind, None, size)
            raise CloseError(1007, "Invalid JSON payload received.")
        self.state.wire.record(self.number, "in", kind, message, size)
        return message

    # -- setup ---------------------------------------------------------------------------------

    async def _handshake(self) -> None:
        credential = self._credential()
        first = await self._receive()
        if not has(first, "setup"):
            raise CloseError(1007, "Invalid JSON payload: the first message must be setup.")
        raw_setup = pick(first, "setup")
        if self.constrained:
            if not credential.startswith(PREFIX):
                raise CloseError(1008, "Unauthenticated: an ephemeral auth token is required.")
            resuming = bool(pick(pick(raw_setup, "sessionResumption"), "handle"))
            token = self.state.tokens.authorize(credential, resuming=resuming)
            raw_setup = constrain(raw_setup if isinstance(raw_setup, dict) else {}, token)
        elif not credential:
            raise CloseError(1008, "Method doesn't allow unregistered callers (no API key).")
        elif credential.startswith(PREFIX):
            raise CloseError(
                1008, "Auth tokens are only accepted by BidiGenerateContentConstrained."
            )
        elif credential != self.state.api_key:
            raise CloseError(1008, "API key not valid. Please pass a valid API key.")
        setup = parse_setup(raw_setup, self.scenario.silence_duration_ms, self.version)
        if setup.resume_handle:
            saved = self.state.resumptions.restore(setup.resume_handle)
            if saved is None:
                raise CloseError(1008, "Invalid session resumption handle.")
            self.conv = saved
        else:
            self.conv.context.text = setup.system_tokens + setup.tools_tokens
        self.setup = setup
        self.vad = Endpointer(setup.silence_duration_ms, INPUT_RATE, self.scenario.vad_threshold)
        await self.send({"setupComplete": {}})
        if self.scenario.go_away_at_s is not None:
            self._spawn(self._go_away_at(self.scenario.go_away_at_s))

    def _credential(self) -> str:
        """The key or token of the upgrade request, wherever the client put it."""
        headers, query = self.ws.headers, self.ws.query_params
        authorization = headers.get("authorization", "")
        if self.constrained:
            for candidate in (
                query.get("access_token"),
                authorization.removeprefix("Token ").strip()
                if authorization.startswith("Token ")
                else None,
            ):
                if candidate:
                    return candidate
        return headers.get("x-goog-api-key") or query.get("key") or query.get("access_token") or ""

    # -- client messages -----------------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        if has(message, "clientContent"):
            await self._client_content(pick(message, "clientContent") or {})
        elif has(message, "realtimeInput"):
            await self._realtime_input(pick(message, "realtimeInput") or {})
        elif has(message, "toolResponse"):
            await self._tool_response(pick(message, "toolResponse") or {})
        elif has(message, "setup"):
            raise CloseError(1007, "Invalid argument: setup must be the first and only setup.")
        else:
            raise CloseError(1007, f"Invalid JSON payload: unknown message {sorted(message)}.")

    async def _client_content(self, content: dict[str, Any]) -> None:
        turns = pick(content, "turns") or []
        if not isinstance(turns, list):
            raise CloseError(1007, "Invalid argument: client_content.turns must be a list.")
        await self._interrupt()  # new client content always stops the model
        for turn in turns:
            texts = [str(pick(p, "text")) for p in pick(turn, "parts") or [] if has(p, "text")]
            self._pending_text += sum(text_tokens(t) for t in texts)
            if (pick(turn, "role") or "user") == "user":
                self._pending_user.extend(texts)
            else:  # a model turn of the history: what the user said before it is answered
                self._pending_user.clear()
        self._pending_user = _newest(self._pending_user, MAX_PENDING_CHARS)
        # As Gemini does, content without turnComplete only accumulates: frameworks (Pipecat,
        # LiveKit) send the user's text with turn_complete=false, then a bare turn_complete=true.
        if pick(content, "turnComplete", False):
            said, self._pending_user = " ".join(self._pending_user), []
            self._start_user_turn(said, spoken=False)

    async def _realtime_input(self, realtime: dict[str, Any]) -> None:
        assert self.setup is not None and self.vad is not None
        chunks = list(pick(realtime, "mediaChunks") or [])
        if has(realtime, "audio"):
            chunks.append(pick(realtime, "audio"))
        for chunk in chunks:
            mime = str(pick(chunk, "mimeType") or "audio/pcm")
            if not mime.startswith("audio/"):
                continue  # video/image frames: accepted, not analysed
            try:
                pcm = b64decode_any(pick(chunk, "data") or "")
            except ValueError as exc:
                raise CloseError(1007, f"Invalid argument: {exc}") from None
            await self._audio(pcm)
        manual = self.setup.manual_activity
        if has(realtime, "activityStart") or has(realtime, "activityEnd"):
            if not manual:
                raise CloseError(
                    1007,
                    "Invalid argument: explicit activity control is not supported when "
                    "automatic activity detection is enabled.",
                )
            if has(realtime, "activityStart"):
                await self._interrupt()
                self._activity_samples = 0
            if has(realtime, "activityEnd") and self._activity_samples is not None:
                samples, self._activity_samples = self._activity_samples, None
                self._start_spoken_turn(samples)
        if pick(realtime, "audioStreamEnd", False) and not manual and self.vad.in_speech:
            self.vad.reset_speech()
            self._start_spoken_turn(self._take_samples(self.vad.received))
        text = pick(realtime, "text")
        if isinstance(text, str) and text:
            await self._interrupt()
            self._pending_text += text_tokens(text)
            said, self._pending_user = " ".join([*self._pending_user, text]), []
            self._start_user_turn(said, spoken=False)

    async def _audio(self, pcm: bytes) -> None:
        assert self.setup is not None and self.vad is not None
        if self.setup.manual_activity:
            if self._activity_samples is not None:  # audio outside an activity is ignored
                self._activity_samples += len(pcm) // 2
            return
        for boundary in self.vad.feed(pcm):
            if boundary.event == "speech_start":
                await self._interrupt()  # barge-in: the user talks over the model
            else:
                self._start_spoken_turn(self._take_samples(boundary.sample))

    def _take_samples(self, upto: int) -> int:
        samples = max(0, upto - self._billed_samples)
        self._billed_samples = max(self._billed_samples, upto)
        return samples

    async def _tool_response(self, body: dict[str, Any]) -> None:
        responses = pick(body, "functionResponses") or []
        if not isinstance(responses, list):
            raise CloseError(1007, "Invalid argument: functionResponses must be a list.")
        speak_now: list[tuple[str, Any]] = []
        speak_now_tokens = 0
        for item in responses:
            call_id, name = pick(item, "id"), str(pick(item, "name") or "")
            response = pick(item, "response") or {}
            tokens = response_tokens(response)
            scheduling = str(pick(item, "scheduling") or "WHEN_IDLE").upper()
            if call_id in self._blocking and self.turn is not None:
                del self._blocking[call_id]
                self.turn.results.append((name, response))
                self.turn.usage.tool_use += tokens
                if not self._blocking:
                    self._blocking_done.set()
            elif call_id in self._groups:
                group = self._groups.pop(call_id)
                group.waiting.discard(call_id)
                if scheduling == "SILENT":
                    self.conv.context.text += tokens  # context only, no generation
                elif scheduling == "INTERRUPT":
                    speak_now.append((name, response))
                    speak_now_tokens += tokens
                else:
                    group.results.append((name, response))
                    group.tokens += tokens
                if not group.waiting and group.results:
                    self._queued.append(self._result_turn(group.results, group.tokens))
            else:
                log.debug("tool response for unknown or cancelled call %r ignored", call_id)
        if speak_now:
            await self._interrupt()
            self._begin(self._result_turn(speak_now, speak_now_tokens))
        self._kick()

    # -- turns ---------------------------------------------------------------------------------

    def _start_spoken_turn(self, samples: int) -> None:
        script = self.scenario.spoken(self.conv.spoken)
        self.conv.spoken += 1
        turn = self._new_turn(script)
        turn.usage.input_audio = audio_tokens(samples, INPUT_RATE)
        turn.user_text, turn.spoken = script.says, True
        self._begin(turn)

    def _start_user_turn(self, text: str, *, spoken: bool) -> None:
        turn = self._new_turn(None)
        turn.user_text, turn.spoken = text, spoken
        self._begin(turn)

    def _result_turn(self, results: list[tuple[str, Any]], tokens: int) -> Turn:
        turn = Turn(number=0, script=ScriptedTurn(), usage=TurnUsage(tool_use=tokens))
        turn.results = list(results)
        return turn

    def _new_turn(self, base: ScriptedTurn | None) -> Turn:
        usage = TurnUsage(input_text=self._pending_text)
        self._pending_text = 0
        return Turn(number=0, script=base or ScriptedTurn(), usage=usage)

    def _begin(self, turn: Turn) -> None:
        """Start the model's output for `turn` (the model must be idle)."""
        self.conv.turns += 1
        turn.number = self.conv.turns
        turn.script = self.scenario.for_turn(turn.number, turn.script)
        turn.usage.thoughts = turn.script.thoughts_tokens
        self.turn = turn
        self.generation = asyncio.get_running_loop().create_task(self._generate(turn))
        self.generation.add_done_callback(self._reap)
        if turn.script.go_away_after_s is not None:
            self._spawn(self._go_away_at(turn.script.go_away_after_s))

    def _kick(self) -> None:
        """Start a queued WHEN_IDLE result turn if the model is idle."""
        if self._queued and not self._holding and not self.closed and self._idle():
            self._begin(self._queued.pop(0))

    def _idle(self) -> bool:
        task = self.generation
        # The generation task itself calls `_kick` as its very last step.
        return task is None or task.done() or task is asyncio.current_task()

    async def _interrupt(self) -> None:
        """Barge-in: stop the current generation and tell the client (no generationComplete)."""
        self._holding = True
        try:
            while (task := self.generation) is not None and not task.done():
                turn = self.turn
                if turn is None or turn.finishing:
                    await asyncio.wait([task])  # a few sends from done; let it finish
                    continue
                task.cancel()
                await asyncio.wait([task])
                cancelled = list(self._blocking)
                self._blocking.clear()
                if cancelled:
                    await self.send({"toolCallCancellation": {"ids": cancelled}})
                await self.send({"serverContent": {"interrupted": True}})
                await self._finish(turn, interrupted=True)
        finally:
            self._holding = False

    async def _generate(self, turn: Turn) -> None:
        assert self.setup is not None
        script = turn.script
        if script.close_code is not None:
            await self.close(script.close_code, script.close_reason)
            return
        if self.scenario.resumption_busy_updates and self.setup.resumption:
            # Gemini: while generating or calling tools the session cannot be resumed.
            await self.send({"sessionResumptionUpdate": {"resumable": False}})
        if turn.spoken and self.setup.input_transcription:
            await self.send(
                {
                    "serverContent": {
                        "inputTranscription": {"text": turn.user_text, "finished": True}
                    }
                }
            )
        if script.reply_delay_s:
            await asyncio.sleep(script.reply_delay_s)
        if turn.results:
            await self._speak(turn, assistant.after_tools(turn.results))
        elif script.reply is not None:
            await self._speak(turn, script.reply)
        else:
            plan = assistant.respond(turn.user_text, self.setup.behaviors)
            if plan.calls:
                await self._call_tools(turn, plan)
            else:
                await self._speak(turn, plan.speech)
        await self.send({"serverContent": {"generationComplete": True}})
        await self._finish(turn)
        self._kick()

    async def _call_tools(self, turn: Turn, plan: assistant.Plan) -> None:
        assert self.setup is not None
        calls = [
            {"id": f"call-{self.number}-{secrets.token_hex(4)}", "name": c.name, "args": c.args}
            for c in plan.calls
        ]
        turn.had_calls = True
        blocking = {
            c["id"]: c["name"] for c in calls if self.setup.behaviors[c["name"]] == "BLOCKING"
        }
        waiting = {c["id"] for c in calls if c["id"] not in blocking}
        if waiting:
            group = ToolGroup(waiting=set(waiting))
            self._groups.update(dict.fromkeys(waiting, group))
        self._blocking = dict(blocking)
        self._blocking_done = asyncio.Event()
        await self.send({"toolCall": {"functionCalls": calls}})
        if blocking:
            # BLOCKING: the turn stays open until every response arrived.
            await self._blocking_done.wait()
            await self._speak(turn, assistant.after_tools(turn.results))
        else:
            # NON_BLOCKING: keep talking; the results get their own turn later.
            await self._speak(turn, plan.speech)

    async def _speak(self, turn: Turn, text: str) -> None:
        """Stream `text` as paced audio chunks (or text parts) with output transcription."""
        assert self.setup is not None
        for chunk in reply_chunks(text, self.scenario):
            content: dict[str, Any] = {}
            if self.setup.modality == "TEXT":
                if not chunk.said:
                    continue
                content["modelTurn"] = {"parts": [{"text": chunk.said}]}
                turn.usage.output_text += text_tokens(chunk.said)
            else:
                audio = {"mimeType": AUDIO_MIME, "data": b64encode(self.synth.take(chunk.samples))}
                content["modelTurn"] = {"parts": [{"inlineData": audio}]}
                if chunk.said and self.setup.output_transcription:
                    content["outputTranscription"] = {"text": chunk.said}
                turn.usage.output_audio_samples += chunk.samples
            await self.send({"serverContent": content})
            await asyncio.sleep(self.scenario.chunk_pause_s)

    async def _finish(self, turn: Turn, *, interrupted: bool = False) -> None:
        """`turnComplete` with the turn's usage (where the scenario says it goes), then the
        resumption handle and a due goAway."""
        turn.finishing = True
        if turn.script.tool_use_prompt_tokens is not None and (turn.had_calls or turn.results):
            turn.usage.tool_use = turn.script.tool_use_prompt_tokens
        usage = turn.usage.metadata(self.conv.context)
        turn.usage.commit(self.conv.context)
        handle = None
        if self.setup is not None and self.setup.resumption:
            handle = self.state.resumptions.save(self.conv)
        delivery = turn.script.usage or self.scenario.usage
        if interrupted and not self.scenario.usage_on_interrupted:
            delivery = "none"
        complete: dict[str, Any] = {"serverContent": {"turnComplete": True}}
        if delivery == "with_turn_complete":
            complete["usageMetadata"] = usage
        await self.send(complete)
        if delivery == "after_turn_complete":
            # An independent server's shape: usage alone, right after the turnComplete message.
            await self.send({"usageMetadata": usage})
        if handle is not None:
            await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})
        if turn.script.go_away:
            self.go_away(self.scenario.go_away_time_left_s)
