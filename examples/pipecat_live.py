"""A Pipecat pipeline with its Gemini Live service, traced by one line.

    voicetrace emulator &                   # or real Gemini: unset the emulator's variables
    python -m examples.pipecat_live --out received.json [--untraced]

An ordinary Pipecat app: `GeminiLiveLLMService` with one function, between a pipeline source
and a processor that records what comes out. No audio devices: the user's turns are frames
queued into the pipeline — typed text (`InputTextRawFrame`), speech (`InputAudioRawFrame`s,
PCM16 16 kHz; the server's voice detection ends the turn), and a request that makes the model
call the function, which Pipecat runs and answers. `main()` adds the one line of tracing; the
exporter comes from the standard OTel variables. The frames the app received are written as
JSON, so a run with and without tracing can be compared.

Needs `pip install 'pipecat-ai[google]' './telemetry[genai]'` (Pipecat pins google-genai 2.x,
so it is not an extra of the voicetrace product).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from pipecat.adapters.llm.schemas.tools_schema import AdapterType, ToolsSchema
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputTextRawFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    SystemFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService
from pipecat.services.llm_service import FunctionCallParams
from pipecat.workers.runner import WorkerRunner

from examples.raw_sdk import MODEL, chunks, speech

INSTRUCTION = "You are a concise voice assistant."
SILENCE = bytes(2 * 16_000 * 6 // 10)  # 0.6 s: more than the server's end-of-speech silence
SCRIPT = ("Hello there!", 0.8, "Find coffee near me")  # typed, 0.8 s spoken, typed (→ tool)
# A Gemini-native declaration, so the behaviour is explicit: an unset one means NON_BLOCKING
# on gemini-3.8-live (Pipecat's FunctionSchema has no field for it).
SEARCH_NEARBY = {
    "name": "search_nearby",
    "description": "Find places near the user.",
    "parameters": {
        "type": "OBJECT",
        "properties": {"query": {"type": "STRING"}},
        "required": ["query"],
    },
    "behavior": "BLOCKING",
}


async def search_nearby(params: FunctionCallParams) -> None:
    query = params.arguments.get("query")
    await params.result_callback(
        {"places": [{"name": "Café Lumen", "distance_m": 120}], "query": query}
    )


def frame_record(frame: Frame) -> dict[str, Any]:
    """What the app sees of one frame, minus what differs per run (ids, times)."""
    # System frames (Pipecat's own RTVI messages, …) skip the queue: their place among the
    # others varies from run to run, so they are marked.
    record: dict[str, Any] = {
        "type": type(frame).__name__,
        "system": isinstance(frame, SystemFrame),
    }
    for name in ("text", "function_name", "arguments", "result", "user_id", "language"):
        value = getattr(frame, name, None)
        if value is not None:
            record[name] = value if isinstance(value, str | int | float | bool) else repr(value)
    audio = getattr(frame, "audio", None)
    if isinstance(audio, bytes | bytearray):
        record["audio_bytes"] = len(audio)
        record["sample_rate"] = getattr(frame, "sample_rate", None)
    return record


class Recorder(FrameProcessor):
    """The pipeline's end: records every frame that reaches it; counts finished responses."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, Any]] = []
        self.responses = asyncio.Queue[None]()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame_record(frame))
            if isinstance(frame, LLMFullResponseEndFrame):
                self.responses.put_nowait(None)
        await self.push_frame(frame, direction)


def user_frames(turn: str | float) -> list[Frame]:
    if isinstance(turn, str):
        return [InputTextRawFrame(text=turn)]
    return [
        InputAudioRawFrame(audio=frame, sample_rate=16_000, num_channels=1)
        for frame in chunks(speech(turn) + SILENCE)
    ]


async def converse(script: tuple[str | float, ...] = SCRIPT) -> list[dict[str, Any]]:
    """The script through the pipeline; every frame the app received, in order."""
    llm = GeminiLiveLLMService(
        api_key=os.environ.get("GEMINI_API_KEY", ""),
        settings=GeminiLiveLLMService.Settings(model=MODEL),
        system_instruction=INSTRUCTION,
        tools=ToolsSchema(
            standard_tools=[],
            custom_tools={AdapterType.GEMINI: [{"function_declarations": [SEARCH_NEARBY]}]},
        ),
    )
    llm.register_function("search_nearby", search_nearby)
    recorder = Recorder()
    worker = PipelineWorker(Pipeline([llm, recorder]), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    running = asyncio.create_task(runner.run(worker))
    # The first user turn seeds the conversation: Pipecat sends it once the session is up.
    first, *rest = script
    await worker.queue_frame(
        LLMContextFrame(LLMContext(messages=[{"role": "user", "content": str(first)}]))
    )
    await asyncio.wait_for(recorder.responses.get(), timeout=30)
    for turn in rest:
        await worker.queue_frames(user_frames(turn))
        await asyncio.wait_for(recorder.responses.get(), timeout=30)
    await worker.queue_frame(EndFrame())  # Pipecat closes the Live session and stops
    await running
    return recorder.frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the received frames here as JSON")
    parser.add_argument("--untraced", action="store_true", help="run without the instrumentor")
    args = parser.parse_args()

    telemetry = None
    if not args.untraced:
        from voicetrace.telemetry import PriceTable
        from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor
        from voicetrace.telemetry.setup import configure_telemetry

        # OTLP export from the standard OTel variables; cost from the packaged price table.
        telemetry = configure_telemetry("pipecat-live-example", pricing=PriceTable.load(None))
        # The one line: every Live session of this process becomes a traced voice_session.
        GenAILiveInstrumentor().instrument(telemetry=telemetry, environment="dev", tags=["pipecat"])

    records = asyncio.run(converse())
    if telemetry is not None:
        telemetry.shutdown(10.0)  # flush the spans before the process exits
    if args.out:
        args.out.write_text(json.dumps(records, indent=1, sort_keys=True))
    print(f"{len(records)} frames received")


if __name__ == "__main__":
    main()
