"""A plain google-genai Live app, traced by one line.

    python examples/raw_sdk.py            # starts the local Gemini Live emulator, no network

The app (`converse`) is ordinary SDK code: it connects with `client.aio.live.connect`, sends
typed turns with `send_client_content` and speech with `send_realtime_input`, answers tool
calls with `send_tool_response`, and reads each turn with `receive()`; after a `goAway` it
reconnects with the last session-resumption handle. It knows nothing of tracing. `main()` adds
the one line — `GenAILiveInstrumentor().instrument(telemetry=...)` — and prints the spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import errors, types

MODEL = "gemini-3.8-live"
INPUT_MIME = "audio/pcm;rate=16000"
ToolHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Say:
    """One user turn: typed `text`, or `speech_s` seconds of speech (then silence)."""

    text: str | None = None
    speech_s: float = 0.0
    barge_in: str | None = None  # typed while the answer plays: cuts the model off


def speech(seconds: float, rate: int = 16_000) -> bytes:
    """A loud tone: what server voice detection counts as speech."""
    n = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n))
    return struct.pack(f"<{n}h", *samples)


def chunks(pcm: bytes, ms: int = 20, rate: int = 16_000) -> list[bytes]:
    size = 2 * rate * ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def default_config() -> types.LiveConnectConfig:
    search = types.FunctionDeclaration(
        name="search_nearby",
        description="Find places near the user.",
        parameters=types.Schema.model_validate(
            {"type": "OBJECT", "properties": {"query": {"type": "STRING"}}, "required": ["query"]}
        ),
        behavior=types.Behavior.BLOCKING,
    )
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        system_instruction="You are a concise voice assistant.",
        tools=[types.Tool(function_declarations=[search])],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(),
    )


async def default_tools(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "search_nearby":
        return {"places": [{"name": "Café Lumen", "distance_m": 120}], "query": args.get("query")}
    return {"error": f"unknown tool {name}"}


async def converse(
    client: genai.Client,
    script: Sequence[Say],
    *,
    config: types.LiveConnectConfig | None = None,
    tools: ToolHandler = default_tools,
    model: str = MODEL,
) -> list[types.LiveServerMessage]:
    """Run the script; every message the app received, in order."""
    config = config or default_config()
    received: list[types.LiveServerMessage] = []
    handle: str | None = None
    pending = list(script)
    while pending:
        if handle is not None and config.session_resumption is not None:
            config = config.model_copy(
                update={"session_resumption": types.SessionResumptionConfig(handle=handle)}
            )
        async with client.aio.live.connect(model=model, config=config) as session:
            try:
                while pending:
                    await _say(session, pending[0])
                    handle = await _read_turn(session, pending[0], received, tools) or handle
                    pending.pop(0)
                    # The resumption update (and a goAway) follow the turn's turnComplete.
                    new_handle, go_away = await _drain(session, received)
                    handle = new_handle or handle
                    if go_away and handle is not None:
                        break  # reconnect now, resuming from the handle
            except errors.APIError as exc:  # the server closed (1000 after goAway): resume
                if exc.code not in (1000, 1001) or handle is None:
                    raise
    return received


async def _drain(
    session: Any, received: list[types.LiveServerMessage], wait_s: float = 0.05
) -> tuple[str | None, bool]:
    """Messages that arrive between turns: (the newest resumable handle, goAway seen)."""
    handle, go_away = None, False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            async for msg in session.receive():
                received.append(msg)
                update = msg.session_resumption_update
                if update is not None and update.resumable and update.new_handle:
                    handle = update.new_handle
                go_away = go_away or msg.go_away is not None
    return handle, go_away


async def _say(session: Any, say: Say) -> None:
    if say.text is not None:
        content = types.Content(role="user", parts=[types.Part(text=say.text)])
        await session.send_client_content(turns=content, turn_complete=True)
    else:
        for frame in chunks(speech(say.speech_s) + bytes(2 * 16_000 * 6 // 10)):
            await session.send_realtime_input(audio=types.Blob(data=frame, mime_type=INPUT_MIME))


async def _read_turn(
    session: Any, say: Say, received: list[types.LiveServerMessage], tools: ToolHandler
) -> str | None:
    """Read one turn (two with a barge-in: the cut turn, then the answer to the new text)."""
    handle = None
    barged = False
    for _ in range(2 if say.barge_in else 1):
        async for msg in session.receive():  # receive() ends after each turnComplete
            received.append(msg)
            update = msg.session_resumption_update
            if update is not None and update.resumable and update.new_handle:
                handle = update.new_handle
            if msg.tool_call is not None:
                calls = msg.tool_call.function_calls or ()
                responses = [
                    types.FunctionResponse(
                        id=c.id, name=c.name, response=await tools(c.name or "", c.args or {})
                    )
                    for c in calls
                ]
                await session.send_tool_response(function_responses=responses)
            content = msg.server_content
            if say.barge_in and not barged and content is not None and content.model_turn:
                barged = True  # the user talks over the answer
                text = types.Content(role="user", parts=[types.Part(text=say.barge_in)])
                await session.send_client_content(turns=text, turn_complete=True)
    return handle


SCRIPT = (
    Say(text="Hello there!"),
    Say(speech_s=0.8),
    Say(text="Find coffee near me"),
    Say(text="Tell me a long story", barge_in="Stop. What time is it?"),
)


async def main() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from voicetrace.emulator import Emulator
    from voicetrace.telemetry import PriceTable, VoiceTelemetry
    from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    telemetry = VoiceTelemetry(provider, pricing=PriceTable.load(None))
    GenAILiveInstrumentor().instrument(telemetry=telemetry)  # ← the one line

    async with Emulator() as emu:
        import os

        os.environ.update(emu.env())
        client = genai.Client()
        received = await converse(client, SCRIPT)
    telemetry.shutdown(5.0)
    print(f"{len(received)} messages received; spans above")


if __name__ == "__main__":
    asyncio.run(main())
