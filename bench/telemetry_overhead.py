"""CPU cost of tracing one realistic voice turn, three ways: on the caller's thread and in total.

    python bench/telemetry_overhead.py [--turns 2000] [--repeat 3]

A turn = user audio frames + transcript, 2 tool calls with results, model audio chunks +
transcript, usage, turn_complete → 4 spans (turn, generation, 2 tools) with usage, cost and
redacted content. Compared:
  voicetrace   SessionTrace calls (recording + phases + usage split + Decimal cost on the
               caller; spans, redaction, JSON and ~18 metric measurements on its emitter
               thread), with an SDK meter provider — and once more with no metrics at all
  plain SDK    the same 4 spans with the same attributes (precomputed), straight through the SDK
  langfuse     the Langfuse Python SDK emitting equivalent observations
All three export through a BatchSpanProcessor to a counting no-op exporter (no network).

Two clocks per emitter, both per turn:
  caller µs    `time.thread_time()` of the thread making the calls: what the voice path (an
               asyncio event loop) pays
  process µs   `time.process_time()` from the first timed turn until a flush returned: every
               thread (caller, voicetrace's emitter, the batch processor) — the total cost
Each figure is the median of `--repeat` runs; every span must reach the exporter (checked).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from voicetrace.telemetry import (
    ModalityTokens,
    PriceTable,
    SessionInfo,
    UsageSnapshot,
    VoiceTelemetry,
)

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
MODEL = "gemini-3.8-live"
SPANS_PER_TURN = 4


class CountingExporter(SpanExporter):
    """Exports nowhere, but counts, so a run that lost spans cannot look cheap."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.count += len(spans)
        return SpanExportResult.SUCCESS


@dataclass
class Rig:
    """One emitter ready to trace turns: `turn()` is timed, `flush()` ends the process clock."""

    turn: Callable[[], None]
    flush: Callable[[], None]
    close: Callable[[], None]
    exporter: CountingExporter


def _provider(exporter: CountingExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    return provider


def voicetrace_rig(metrics: bool) -> Rig:
    exporter = CountingExporter()
    provider = _provider(exporter)
    # With metrics: an SDK meter provider with a reader (never collected here), so every
    # measurement is aggregated as it would be for Prometheus/OTLP. Without: the global no-op.
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()]) if metrics else None
    tel = VoiceTelemetry(
        provider,
        meters,
        pricing=PriceTable.load(None),
        capture_content=True,
        max_emit_queue=100_000,
    )
    s = tel.start_session(
        SessionInfo("bench", "user", MODEL, recording_consent=True, secrets_blurred=("bluebird",))
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

    def flush() -> None:
        if not tel.force_flush(30.0):
            raise RuntimeError("voicetrace did not flush")
        if tel.health()["emit_dropped"]:
            raise RuntimeError("the emitter dropped jobs: the numbers would be too low")

    def close() -> None:
        s.end()
        tel.shutdown(5.0)
        provider.shutdown()
        if meters is not None:
            meters.shutdown()

    return Rig(turn, flush, close, exporter)


def plain_sdk_rig(attrs: dict[str, dict[str, Any]]) -> Rig:
    """The same spans and attributes (captured from a voicetrace turn), emitted directly."""
    exporter = CountingExporter()
    provider = _provider(exporter)
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
            f"chat {MODEL}", ctx, SpanKind.CLIENT, attributes=attrs["chat"], start_time=now
        ).end(end_time=now + 2)
        t.end(end_time=now + 3)

    def close() -> None:
        root.end()
        provider.shutdown()

    return Rig(turn, lambda: _check(provider.force_flush(30_000)), close, exporter)


def langfuse_rig() -> Rig | None:
    try:
        from langfuse import Langfuse
    except ImportError:
        return None
    exporter = CountingExporter()
    # Langfuse keeps one set of resources per public key for the process: a fresh key per run,
    # or a run after the first one's shutdown() would reuse a closed processor.
    client = Langfuse(
        public_key=f"pk-lf-bench-{uuid.uuid4().hex}",
        secret_key="sk-lf-bench",
        host="http://127.0.0.1:9",
        span_exporter=exporter,
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
            name=f"chat {MODEL}",
            as_type="generation",
            model=MODEL,
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

    def close() -> None:
        root.end()
        client.shutdown()

    return Rig(turn, client.flush, close, exporter)


def _check(ok: bool) -> None:
    if not ok:
        raise RuntimeError("flush timed out")


def measure(make: Callable[[], Rig | None], n: int) -> tuple[float, float] | None:
    """(caller µs/turn, process µs/turn) of one run of `n` turns after a warm-up."""
    rig = make()
    if rig is None:
        return None
    try:
        for _ in range(min(200, n)):
            rig.turn()
        rig.flush()
        before = rig.exporter.count
        gc.collect()
        process0, thread0 = time.process_time(), time.thread_time()
        for _ in range(n):
            rig.turn()
        caller = time.thread_time() - thread0
        rig.flush()  # the process clock stops once every span was built and exported
        process = time.process_time() - process0
        exported = rig.exporter.count - before
        if exported != n * SPANS_PER_TURN:
            raise RuntimeError(f"expected {n * SPANS_PER_TURN} spans exported, got {exported}")
    finally:
        rig.close()
    return caller / n * 1e6, process / n * 1e6


def captured_attributes() -> dict[str, dict[str, Any]]:
    """One voicetrace turn's span attributes, so the plain SDK run carries the same ones."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tel = VoiceTelemetry(provider, pricing=PriceTable.load(None), capture_content=True)
    s = tel.start_session(SessionInfo("b", "u", MODEL, recording_consent=True))
    s.user_audio(0.02, voiced=True)
    s.input_transcript(SAID)
    for cid, name in (("c1", "search_nearby"), ("c2", "directions")):
        s.tool_call(cid, name, {"q": "coffee"})
        s.tool_result(cid, {"ok": True}, duration_s=0.1)
    s.model_audio(9600)
    s.output_transcript(ANSWER)
    s.usage(USAGE)
    s.turn_complete()
    tel.force_flush(5.0)  # spans are built on the emitter thread
    out: dict[str, dict[str, Any]] = {}
    for span in memory.get_finished_spans():
        key = (
            span.name.split()[-1] if span.name.startswith("execute_tool") else span.name.split()[0]
        )
        out[{"invoke_agent": "turn"}.get(key, key)] = dict(span.attributes or {})
    s.end()
    tel.shutdown(1.0)
    return out


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "absent"

    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · nproc {usable} · {model} · "
        f"Python {platform.python_version()} · opentelemetry-sdk {version('opentelemetry-sdk')}"
        f" · langfuse {version('langfuse')}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.turns < 1 or args.repeat < 1:
        parser.error("--turns and --repeat must be at least 1")
    attrs = captured_attributes()
    rigs: dict[str, Callable[[], Rig | None]] = {
        "voicetrace": lambda: voicetrace_rig(metrics=True),
        "  no metrics": lambda: voicetrace_rig(metrics=False),
        "plain OTel SDK": lambda: plain_sdk_rig(attrs),
        "Langfuse SDK": langfuse_rig,
    }
    results: dict[str, tuple[float, float]] = {}
    for name, make in rigs.items():
        runs = [r for _ in range(args.repeat) if (r := measure(make, args.turns)) is not None]
        if runs:
            results[name] = (
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
            )
    print(machine())
    print(
        f"CPU per traced turn ({SPANS_PER_TURN} spans), {args.turns} turns, median of {args.repeat}"
    )
    vt_caller, vt_process = results["voicetrace"]
    print(f"{'emitter':<16} {'caller µs':>10} {'vs vt':>7} {'process µs':>11} {'vs vt':>7}")
    for name, (caller, process) in results.items():
        print(
            f"{name:<16} {caller:>10.1f} {caller / vt_caller:>6.2f}x "
            f"{process:>11.1f} {process / vt_process:>6.2f}x"
        )
    plain_caller, plain_process = results["plain OTel SDK"]
    print(
        f"\nvoicetrace / plain SDK: caller {vt_caller / plain_caller:.2f} (target ≤ 1.2), "
        f"process {vt_process / plain_process:.2f}"
    )
    if "Langfuse SDK" in results:
        lf_caller, lf_process = results["Langfuse SDK"]
        print(
            f"Langfuse SDK / voicetrace: caller {lf_caller / vt_caller:.2f} (target ≥ 4), "
            f"process {lf_process / vt_process:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
