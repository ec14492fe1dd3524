"""A Google ADK live agent, traced by one line.

    voicetrace emulator &                   # or real Gemini: unset the emulator's variables
    python -m examples.adk_live --out received.json [--untraced]

An ordinary ADK app: an `Agent` with one tool, run by `Runner.run_live` and fed through a
`LiveRequestQueue` — a typed turn, a spoken one (PCM frames, no audio device: the server's
voice detection ends it), and a turn that makes the agent call its tool. ADK runs the tool and
answers the model itself. `main()` adds the one line of tracing; the exporter comes from the
standard OTel variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, …). The events the app received are
written as JSON, so a run with and without tracing can be compared.

Needs `pip install google-adk './telemetry[genai]'` (ADK pins google-genai 2.x and
OpenTelemetry ≤ 1.44, so it is not an extra of the voicetrace product).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from google.adk.agents import Agent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig, StreamingMode
from google.adk.models.google_llm import Gemini
from google.adk.runners import InMemoryRunner
from google.adk.tools import FunctionTool
from google.genai import types

from examples.raw_sdk import INPUT_MIME, MODEL, chunks, speech

INSTRUCTION = "You are a concise voice assistant."
SILENCE = bytes(2 * 16_000 * 6 // 10)  # 0.6 s: more than the server's end-of-speech silence


def search_nearby(query: str) -> dict[str, Any]:
    """Find places near the user."""
    return {"places": [{"name": "Café Lumen", "distance_m": 120}], "query": query}


def build_agent(instruction: str = INSTRUCTION) -> Agent:
    tool = FunctionTool(search_nearby)
    tool.behavior = types.Behavior.BLOCKING  # explicit: unset means NON_BLOCKING on 3.8 Live
    return Agent(
        name="voice_agent", model=Gemini(model=MODEL), instruction=instruction, tools=[tool]
    )


def event_record(event: Any) -> dict[str, Any]:
    """One ADK event as JSON, minus what differs per run (ids, times, handles)."""
    data: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    for key in ("id", "timestamp", "invocation_id", "live_session_id"):
        data.pop(key, None)
    for part in (data.get("content") or {}).get("parts", ()):
        for kind in ("function_call", "function_response"):
            if kind in part:
                part[kind].pop("id", None)
    update = data.get("live_session_resumption_update")
    if update and "new_handle" in update:
        update["new_handle"] = "<handle>"
    return data


SCRIPT = ("Hello there!", 0.8, "Find coffee near me")  # typed, 0.8 s spoken, typed (→ tool)


def say(queue: LiveRequestQueue, turn: str | float) -> None:
    """One user turn into the queue: typed text, or seconds of speech then silence."""
    if isinstance(turn, str):
        queue.send_content(types.Content(role="user", parts=[types.Part(text=turn)]))
        return
    for frame in chunks(speech(turn) + SILENCE):
        queue.send_realtime(types.Blob(data=frame, mime_type=INPUT_MIME))


async def converse(agent: Agent, script: tuple[str | float, ...] = SCRIPT) -> list[Any]:
    """The script through `run_live`; every event the app received, in order."""
    runner = InMemoryRunner(agent=agent, app_name="voicetrace-example")
    session = await runner.session_service.create_session(
        app_name="voicetrace-example", user_id="alice"
    )
    queue = LiveRequestQueue()
    run_config = RunConfig(
        streaming_mode=StreamingMode.BIDI,
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(),  # handles to resume after goAway
    )
    pending = list(script)
    say(queue, pending.pop(0))
    received: list[Any] = []
    async for event in runner.run_live(
        user_id="alice", session_id=session.id, live_request_queue=queue, run_config=run_config
    ):
        received.append(event)
        if event.turn_complete:  # the model finished answering: the user's next turn
            if pending:
                say(queue, pending.pop(0))
            else:
                queue.close()  # the user is done: ADK closes the live connection and returns
    await runner.close()
    return received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the received events here as JSON")
    parser.add_argument("--untraced", action="store_true", help="run without the instrumentor")
    args = parser.parse_args()

    telemetry = None
    if not args.untraced:
        from voicetrace.telemetry import PriceTable
        from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor
        from voicetrace.telemetry.setup import configure_telemetry

        # OTLP export from the standard OTel variables; cost from the packaged price table.
        telemetry = configure_telemetry("adk-live-example", pricing=PriceTable.load(None))
        # The one line: every Live session of this process becomes a traced voice_session.
        GenAILiveInstrumentor().instrument(telemetry=telemetry, environment="dev", tags=["adk"])

    received = asyncio.run(converse(build_agent()))
    if telemetry is not None:
        telemetry.shutdown(10.0)  # flush the spans before the process exits
    records = [event_record(e) for e in received]
    if args.out:
        args.out.write_text(json.dumps(records, indent=1, sort_keys=True))
    print(f"{len(records)} events received")


if __name__ == "__main__":
    main()
