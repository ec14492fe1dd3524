"""CPU cost on the caller's thread of tracing one realistic voice turn, three ways.

    python bench/telemetry_overhead.py [--turns 2000]

A turn = user audio frames + transcript, 2 tool calls with results, model audio chunks +
transcript, usage, turn_complete → 4 spans (turn, generation, 2 tools) with usage, cost and
redacted content. Compared:
  voicetrace   SessionTrace calls (recording + phases + usage split + Decimal cost + redaction)
  plain SDK    the same 4 spans with the same attributes, straight through the OTel SDK
  langfuse     the Langfuse Python SDK 5 emitting equivalent observations
All three use a BatchSpanProcessor to a no-op exporter (no network), and `time.thread_time()`
so only the caller thread's CPU is counted (export runs on the processor's own thread).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from telemetry import ModalityTokens, PriceTable, SessionInfo, UsageSnapshot, VoiceTelemetry

USAGE = UsageSnapshot(
    prompt=2400,
    cached=400,
    response=350,
    tool_use_prompt=80,
    thoughts=40,
    total=2870,
    prompt_details=(ModalityTokens("TEXT", 900), ModalityTokens("AUDIO", 1500)),
    cache_details=(ModalityTokens("TEXT", 400),),
    response_details=(ModalityTokens("AUDIO", 330), ModalityTokens("TEXT", 20)),
)
SAID = "Find me a coffee place near the harbour, my number is +44 20 7946 0958."
ANSWER = "There is a nice café two minutes from the harbour; I sent directions to your phone."


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoOpExporter(), max_queue_size=100_000))
    return provider


def voicetrace_turns(n: int) -> tuple[float, Callable[[], None]]:
    provider = _provider()
    tel = VoiceTelemetry(provider, pricing=PriceTable.load(None), capture_content=True)
    s = tel.start_session(
        SessionInfo(
            "bench",
            "user",
            "gemini-3.8-live",
            recording_consent=True,
            secrets_blurred=("bluebird",),
        )
    )

    def turn() -> None:
        for _ in range(5):
            s.user_audio(0.02, voiced=True)
        s.input_transcript(SAID, finished=True)
        s.tool_call("c1", "search_nearby", {"q": "coffee", "near": "harbour"})
        s.tool_result("c1", {"places": ["Kaffe Hav", "Bryggen"]}, duration_s=0.12)
        s.tool_call("c2", "directions", {"to": "Kaffe Hav"})
        s.tool_result("c2", {"steps": 4, "minutes": 2}, duration_s=0.08)
        for _ in range(5):
            s.model_audio(9600)
        s.output_transcript(ANSWER)
        s.generation_complete()
        s.usage(USAGE)
        s.turn_complete()

    used = _run(turn, n)

    def close() -> None:
        s.end()
        tel.shutdown(5)

    return used, close


def plain_sdk_turns(n: int, attrs: dict[str, dict[str, Any]]) -> tuple[float, Callable[[], None]]:
    """The same spans and attributes (captured from a voicetrace turn), emitted directly."""
    from opentelemetry import trace

    provider = _provider()
    tracer = provider.get_tracer("bench")
    root = tracer.start_span("voice_session")
    root_ctx = trace.set_span_in_context(root)

    def turn() -> None:
        now = time.time_ns()
        t = tracer.start_span(
            "invoke_agent voicetrace", root_ctx, attributes=attrs["turn"], start_time=now
        )
        ctx = trace.set_span_in_context(t)
        for name in ("search_nearby", "directions"):
            tracer.start_span(
                f"execute_tool {name}", ctx, attributes=attrs[name], start_time=now
            ).end(end_time=now + 1)
        tracer.start_span(
            "chat gemini-3.8-live", ctx, SpanKind.CLIENT, attributes=attrs["chat"], start_time=now
        ).end(end_time=now + 2)
        t.end(end_time=now + 3)

    used = _run(turn, n)

    def close() -> None:
        root.end()
        provider.shutdown()

    return used, close


def langfuse_turns(n: int) -> tuple[float, Callable[[], None]] | None:
    try:
        from langfuse import Langfuse
    except ImportError:
        return None
    client = Langfuse(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",
        host="http://127.0.0.1:9",
        span_exporter=NoOpExporter(),
        tracer_provider=TracerProvider(),
        flush_at=512,
        flush_interval=60,
    )
    root = client.start_observation(name="voice_session", as_type="span")

    def turn() -> None:
        agent = root.start_observation(
            name="invoke_agent voicetrace",
            as_type="agent",
            input=SAID,
            output=ANSWER,
            metadata={"turn": 1, "ttfa_ms": 400.0},
        )
        for name in ("search_nearby", "directions"):
            agent.start_observation(
                name=name, as_type="tool", input={"q": "coffee"}, output={"ok": True}
            ).end()
        agent.start_observation(
            name="chat gemini-3.8-live",
            as_type="generation",
            model="gemini-3.8-live",
            input=SAID,
            output=ANSWER,
            usage_details={
                "input_text_tokens": 500,
                "input_audio_tokens": 1500,
                "input_cached_tokens": 400,
                "output_audio_tokens": 330,
                "output_text_tokens": 20,
                "output_reasoning_tokens": 40,
            },
            cost_details={"total": 0.0068},
        ).end()
        agent.end()

    used = _run(turn, n)

    def close() -> None:
        root.end()
        client.shutdown()

    return used, close


def _run(turn: Callable[[], None], n: int) -> float:
    for _ in range(min(200, n)):  # warm-up
        turn()
    gc.collect()
    start = time.thread_time()
    for _ in range(n):
        turn()
    return (time.thread_time() - start) / n * 1e6


def _captured_attributes() -> dict[str, dict[str, Any]]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tel = VoiceTelemetry(provider, pricing=PriceTable.load(None), capture_content=True)
    s = tel.start_session(SessionInfo("b", "u", "gemini-3.8-live", recording_consent=True))
    s.user_audio(0.02, voiced=True)
    s.input_transcript(SAID)
    for cid, name in (("c1", "search_nearby"), ("c2", "directions")):
        s.tool_call(cid, name, {"q": "coffee"})
        s.tool_result(cid, {"ok": True}, duration_s=0.1)
    s.model_audio(9600)
    s.output_transcript(ANSWER)
    s.usage(USAGE)
    s.turn_complete()
    out: dict[str, dict[str, Any]] = {}
    for span in memory.get_finished_spans():
        key = (
            span.name.split()[-1] if span.name.startswith("execute_tool") else span.name.split()[0]
        )
        out[{"invoke_agent": "turn"}.get(key, key)] = dict(span.attributes or {})
    s.end()
    tel.shutdown(1)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args(argv)
    attrs = _captured_attributes()
    results: dict[str, float] = {}
    vt, close = voicetrace_turns(args.turns)
    close()
    results["voicetrace"] = vt
    plain, close = plain_sdk_turns(args.turns, attrs)
    close()
    results["plain OTel SDK"] = plain
    lf = langfuse_turns(args.turns)
    if lf is not None:
        results["Langfuse SDK 5"] = lf[0]
        lf[1]()
    print(f"CPU on the caller thread per traced turn (4 spans), {args.turns} turns")
    print(f"{'emitter':<16} {'µs/turn':>9} {'vs voicetrace':>14}")
    for name, us in results.items():
        print(f"{name:<16} {us:>9.1f} {us / vt:>13.2f}x")
    print(f"\nvoicetrace / plain SDK = {vt / plain:.2f} (target ≤ 1.2)")
    if "Langfuse SDK 5" in results:
        print(f"Langfuse SDK / voicetrace = {results['Langfuse SDK 5'] / vt:.2f} (target ≥ 4)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
