"""The service's path for `bench/tracer_replay.py`: the script through the service's own adapter.

`converse` runs the replay script as a voice session of the service would, minus everything that
is not tracing: the bridge's model adapter (`voice.gemini.GeminiLive`, the class the bridge uses,
with the process-wide `GeminiClients`) against the same replay server, one task consuming its
typed events as the bridge's model loop does, the script's inputs sent as its client loop does
(typed text, 20 ms audio frames, tool results from a `ToolRegistry`). What happens to the
events is the `Hooks`: `Hooks` itself does nothing (`service-untraced`); `TracedHooks` makes the
calls the bridge makes, through the same functions (`voice.trace_calls` and the few
`SessionTrace` methods the bridge calls directly: connect, typed text, end).

Not here, on purpose: no client WebSocket, no budget, no usage ledger, no session store and no
turn reports (`on_turn_settled`), so `service` − `service-untraced` is the tracing the service
adds, nothing else.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from voicetrace.service.voice import events as ev
from voicetrace.service.voice import trace_calls
from voicetrace.service.voice.audio import pcm16_duration_s
from voicetrace.service.voice.gemini import GeminiClients, GeminiLive
from voicetrace.service.voice.live_model import LiveModelConfig
from voicetrace.service.voice.protocol import INPUT_SAMPLE_RATE
from voicetrace.service.voice.tools import ToolOutcome, ToolRegistry
from voicetrace.telemetry import SessionInfo, SessionTrace, VoiceTelemetry

from examples import raw_sdk
from examples.raw_sdk import Say

SYSTEM_PROMPT = "You are a concise voice assistant."  # as examples/raw_sdk.default_config


def tools() -> ToolRegistry:
    """The example app's one tool (`search_nearby`, BLOCKING), registered as a service app does."""
    registry = ToolRegistry()

    @registry.register(description="Find places near the user.")
    async def search_nearby(query: str) -> dict[str, Any]:
        return await raw_sdk.default_tools("search_nearby", {"query": query})

    return registry


def model_config(registry: ToolRegistry) -> LiveModelConfig:
    """The session setup the example app sends, as the service's `LiveModelConfig` (no voice,
    transcription both ways, resumption on)."""
    return LiveModelConfig(
        model=raw_sdk.MODEL, voice=None, system_prompt=SYSTEM_PROMPT, tools=tuple(registry.specs())
    )


class Hooks:
    """`service-untraced`: the events are consumed and nothing is reported."""

    def connect_started(self) -> None: ...

    def connect_finished(self) -> None: ...

    def user_text(self, text: str) -> None: ...

    def user_audio(self, frame: bytes, seconds: float) -> None: ...

    def model_event(self, event: ev.ModelEvent) -> None: ...

    def tool_outcome(self, outcome: ToolOutcome) -> None: ...

    def end(self) -> None: ...


class TracedHooks(Hooks):
    """`service`: one `SessionTrace` per session, fed as `voice.bridge` / `voice.start` feed it."""

    def __init__(self, telemetry: VoiceTelemetry, live: GeminiLive, registry: ToolRegistry) -> None:
        host, port = live.endpoint
        config = live.config
        self.trace: SessionTrace = telemetry.start_session(
            SessionInfo(
                session_id=str(uuid.uuid4()),
                user_id="bench-user",
                model=config.model,
                system_prompt=config.system_prompt,
                server_address=host,
                server_port=port,
            )
        )
        self.non_blocking = trace_calls.non_blocking_tools(registry)

    def connect_started(self) -> None:
        self.trace.connect_started()

    def connect_finished(self) -> None:
        self.trace.connect_finished()

    def user_text(self, text: str) -> None:
        self.trace.user_text(text)

    def user_audio(self, frame: bytes, seconds: float) -> None:
        trace_calls.user_audio(self.trace, frame, seconds)

    def model_event(self, event: ev.ModelEvent) -> None:
        trace_calls.model_event(self.trace, event, self.non_blocking)

    def tool_outcome(self, outcome: ToolOutcome) -> None:
        trace_calls.tool_outcome(self.trace, outcome)

    def end(self) -> None:
        self.trace.end()


async def converse(
    clients: GeminiClients,
    registry: ToolRegistry,
    script: Sequence[Say],
    telemetry: VoiceTelemetry | None,
    drain_s: float = 0.05,
) -> None:
    """One session of `script` through `GeminiLive`; traced when `telemetry` is given."""
    live = GeminiLive(model_config(registry), clients)
    hooks = Hooks() if telemetry is None else TracedHooks(telemetry, live, registry)
    hooks.connect_started()
    await live.connect()
    hooks.connect_finished()
    completed: asyncio.Queue[None] = asyncio.Queue()
    barge_in: list[str] = []  # typed over the answer at its first audio chunk

    async def send_text(text: str) -> None:
        hooks.user_text(text)
        await live.send_text(text)

    async def model_loop() -> None:  # the bridge's _model_loop, minus the client socket
        async for event in live.events():
            hooks.model_event(event)
            kind = type(event)
            if kind is ev.TurnComplete:
                completed.put_nowait(None)
            elif kind is ev.AudioOut and barge_in:
                await send_text(barge_in.pop())
            elif isinstance(event, ev.ToolCall):
                for call in event.calls:  # the bridge runs each in a task; one call here
                    outcome = await registry.run(call)
                    hooks.tool_outcome(outcome)
                    await live.send_tool_results([registry.result_for(outcome)])
            elif isinstance(event, ev.ModelError):
                raise RuntimeError(f"the replay failed: {event.code} {event.reason}")

    receiving = asyncio.create_task(model_loop(), name="bench-model-loop")
    try:
        for say in script:
            if say.barge_in:
                barge_in.append(say.barge_in)
            if say.text is not None:
                await send_text(say.text)
            else:  # the bridge's _on_audio for each 20 ms frame (no rate limit, no budget)
                pcm = raw_sdk.speech(say.speech_s) + bytes(2 * INPUT_SAMPLE_RATE * 6 // 10)
                for frame in raw_sdk.chunks(pcm):
                    hooks.user_audio(frame, pcm16_duration_s(len(frame), INPUT_SAMPLE_RATE))
                    await live.send_audio(frame)
            for _ in range(2 if say.barge_in else 1):  # a barge-in cuts one turn, opens one
                waiting = asyncio.ensure_future(completed.get())
                await asyncio.wait({waiting, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if not waiting.done():
                    waiting.cancel()
                    receiving.result()  # the model loop's failure
                    raise RuntimeError("the model's events ended before the script did")
        await asyncio.sleep(drain_s)  # what follows the last turnComplete (resumption update)
    finally:
        await live.close()
        try:
            await receiving
        finally:
            hooks.end()
