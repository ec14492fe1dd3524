"""The model's side of a Live session: starting turns, generating their output, barge-in.

Concurrency: the read loop handles client messages in order; the model's output for a turn runs
as one `generation` task at a time, so a barge-in is "cancel that task, then report". A turn that
is already sending its `turnComplete` is never cancelled mid-way (`Turn.finishing`).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.websockets import WebSocket
from voicetrace.emulator import assistant
from voicetrace.emulator.connection import Connection
from voicetrace.emulator.protocol import b64encode
from voicetrace.emulator.scenario import ScriptedTurn
from voicetrace.emulator.state import EmulatorState, ToolGroup, Turn
from voicetrace.emulator.synth import AUDIO_MIME, SpeechSynth, reply_chunks
from voicetrace.emulator.usage import INPUT_RATE, TurnUsage, audio_tokens, text_tokens


class TurnEngine(Connection):
    def __init__(self, ws: WebSocket, state: EmulatorState, version: str, method: str) -> None:
        super().__init__(ws, state, version, method)
        self.synth = SpeechSynth()
        self.generation: asyncio.Task[None] | None = None
        self.turn: Turn | None = None
        self._pending_text = 0  # client_content without turnComplete, billed to the next turn
        self._blocking: dict[str, str] = {}  # call id → name, awaited by the current turn
        self._blocking_done: asyncio.Event = asyncio.Event()
        self._groups: dict[str, ToolGroup] = {}  # non-blocking call id → its group
        self._queued: list[Turn] = []  # WHEN_IDLE result turns waiting for the model to idle
        self._holding = False  # a barge-in is in progress: do not start queued turns

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
        ids = [f"call-{self.number}-{secrets.token_hex(4)}" for _ in plan.calls]
        turn.had_calls = True
        blocking = {
            call_id: call.name
            for call_id, call in zip(ids, plan.calls, strict=True)
            if self.setup.behaviors[call.name] == "BLOCKING"
        }
        waiting = {call_id for call_id in ids if call_id not in blocking}
        if waiting:
            group = ToolGroup(waiting=set(waiting))
            self._groups.update(dict.fromkeys(waiting, group))
        self._blocking = dict(blocking)
        self._blocking_done = asyncio.Event()
        calls = [
            {"id": call_id, "name": call.name, "args": call.args}
            for call_id, call in zip(ids, plan.calls, strict=True)
        ]
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
