"""`voicetrace demo`: the whole product, offline, in one process.

Starts the Gemini Live emulator and the service on free ports, creates a session over REST with a
minted token, and plays a scripted conversation through a real WebSocket client: a typed turn, two
spoken turns (speech-like audio followed by silence, ended by the emulator's server-side VAD), a
turn with two tool calls, and a barge-in. Then it prints the session's trace as a tree.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from voicetrace.demo.tools import demo_registry
from voicetrace.demo.trace_tree import format_trace
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.api.auth import mint_token
from voicetrace.service.app import create_app
from voicetrace.service.client import VoiceClient
from voicetrace.service.server import serve_in_background
from voicetrace.service.settings import Settings
from voicetrace.service.voice.audio import silence, speech_like
from voicetrace.telemetry import PriceTable
from voicetrace.telemetry.setup import configure_telemetry
from voicetrace.telemetry.targets import ExportPlan, offline_defaults, plan_exports

# What the spoken turns "say": the emulator cannot recognise speech, so transcripts are scripted.
SPOKEN = [
    "What's a nice thing to do this afternoon?",
    "Tell me more about the old town.",
    "Find a coffee place nearby and give me walking directions to the harbour.",
    "Tell me a long story about the harbour and its lighthouse, with every detail you know.",
    "Sorry, stop. Just tell me when the museum opens.",
]


class _Printer:
    """Prints the conversation as it happens, one line per meaningful event."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self._partial: dict[tuple[int | None, str], str] = {}

    def __call__(self, m: dict[str, Any]) -> None:
        if not self.verbose:
            return
        kind = m["type"]
        if kind == "transcript":
            key = (m.get("turn"), m["role"])
            self._partial[key] = self._partial.get(key, "") + m["text"]
            if m["role"] == "user" and m["final"]:
                print(f"  🧑 user   : {self._partial.pop(key).strip()}")
        elif kind == "tool_call":
            print(f"  🔧 tool   : {m['name']}({json.dumps(m['args'])})")
        elif kind == "tool_result":
            status = "ok" if m["ok"] else f"error: {m['error']}"
            print(f"  🔧 result : {m['name']} {status} in {m['duration_ms']:.1f} ms")
        elif kind == "interrupted":
            said = self._partial.pop((m.get("turn"), "model"), "").strip()
            print(f"  🤖 model  : {_clip(said, 100)} (cut off)")
            print(f"  ✋ barge-in: turn {m['turn']} interrupted")
        elif kind == "turn_complete":
            said = self._partial.pop((m["number"], "model"), "").strip()
            if said:
                print(f"  🤖 model  : {_clip(said)}")
            cost = f"${m['cost_usd']:.5f}" if m.get("cost_usd") is not None else "n/a"
            print(
                f"  ⏱  turn {m['number']} {m['end_reason']}: total {m['total_ms']:.0f} ms "
                f"(speech {m['user_speech_ms']:.0f} + endpointing {m['endpointing_ms']:.0f} + "
                f"response {m['response_ms']:.0f}), TTFA {_ms(m.get('ttfa_ms'))}, cost {cost}"
            )
        elif kind in ("budget_warning", "session_paused", "error"):
            print(f"  ⚠  {kind}: {json.dumps({k: v for k, v in m.items() if k != 'type'})}")


def _clip(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _post_json(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created: dict[str, Any] = json.loads(response.read())
    return created


async def _spoken(client: VoiceClient, seconds: float) -> None:
    # 100 ms frames at real-time pace, like a phone's microphone, so the latency phases are real.
    await client.say(speech_like(seconds) + silence(0.6), frame_ms=100, pace_s=0.1)


async def run_demo(verbose: bool = True) -> int:
    started = time.perf_counter()
    # Export only where told (never to a default port), checked before anything starts.
    env = offline_defaults(os.environ)
    plan = plan_exports(env)
    memory = InMemorySpanExporter()
    with tempfile.TemporaryDirectory(prefix="voicetrace-demo-") as tmp:
        async with Emulator(scenario=Scenario(user_says=SPOKEN)) as emulator:
            # The unmodified google-genai SDK finds the emulator through its standard env vars.
            os.environ.update(emulator.env())
            settings = Settings(
                sqlite_path=Path(tmp) / "demo.db",
                jwt_secret=SecretStr(os.urandom(16).hex()),
                gemini_api_key=SecretStr(emulator.api_key),
                database_url=None,
            )
            telemetry = configure_telemetry(
                service_name="voicetrace-demo",
                pricing=PriceTable.load(settings.prices_file),
                extra_processors=[SimpleSpanProcessor(memory)],
                env=env,
                plan=plan,
            )
            app = create_app(
                settings, telemetry=telemetry, tools=demo_registry(settings.tool_timeout_s)
            )
            async with serve_in_background(app) as server:
                token = mint_token("demo-user", settings.jwt_secret.get_secret_value())
                created = await asyncio.to_thread(
                    _post_json,
                    f"{server.base_url}/live-sessions",
                    token,
                    {"mode": "demo", "recording_consent": True},
                )
                session_id = created["id"]
                if verbose:
                    print(
                        f"voicetrace demo — emulator {emulator.base_url}, service {server.base_url}"
                    )
                    print(f"session {session_id} (user demo-user)\n")
                ws_url = server.base_url.replace("http", "ws", 1) + f"/v1/voice/{session_id}"
                async with VoiceClient.connect(
                    ws_url, token, on_message=_Printer(verbose)
                ) as client:
                    await client.wait_for("session_started")
                    await _conversation(client, verbose)
                    await client.send("end")
                    ended = await client.wait_for("session_ended")
            telemetry.force_flush(5.0)
            spans = memory.get_finished_spans()
            if verbose:
                summary = ended["summary"]
                print(
                    f"\nsession {summary['end_reason']}: {summary['turns']} turns, "
                    f"{summary['tool_calls']} tool calls, "
                    f"{summary['interruptions']} interruption(s), "
                    f"{summary['input_tokens']} input / {summary['output_tokens']} output tokens, "
                    f"${summary['cost_usd']:.5f}"
                )
            print("\ntrace of the session:")
            print(format_trace(spans))
            print(f"\n{len(spans)} spans; exported to: {export_line(plan)}")
            print(f"demo finished in {time.perf_counter() - started:.1f} s")
            telemetry.shutdown(5.0)
    return 0


async def _conversation(client: VoiceClient, verbose: bool) -> None:
    def step(title: str) -> None:
        if verbose:
            print(f"— {title}")

    step("typed turn")
    await client.send("text", text="Hi! What can you do for me?")
    await client.wait_for("turn_complete", count=1)

    step("spoken turn (ended by the emulator's voice activity detection)")
    await _spoken(client, 1.2)
    await client.wait_for("turn_complete", count=2)

    step("spoken turn")
    await _spoken(client, 0.9)
    await client.wait_for("turn_complete", count=3)

    step("spoken turn with two tool calls")
    await _spoken(client, 1.5)
    await client.wait_for("turn_complete", count=4)

    step("barge-in: the user talks over a long answer")
    await _spoken(client, 1.0)
    await client.wait_for("transcript", where=lambda m: m["role"] == "model" and m["turn"] == 5)
    await asyncio.sleep(0.05)  # let some of the answer play
    await _spoken(client, 0.8)
    await client.wait_for("turn_complete", count=6, timeout=15)


def export_line(plan: ExportPlan) -> str:
    """Where this run's telemetry went: rendered from the plan its providers were built from."""
    if plan.disabled:
        return "nothing (OTEL_SDK_DISABLED=true: no spans were recorded)"
    line = f"in-memory (this tree); {plan.describe()}"
    if not plan.traces:
        line += " (set OTEL_EXPORTER_OTLP_ENDPOINT or LANGFUSE_PUBLIC_KEY/SECRET_KEY to export)"
    return line
