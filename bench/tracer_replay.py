"""Replay benchmark: what each tracer adds, per turn, to a real google-genai Live session.

    python bench/tracer_replay.py [--repeat 30]

1. Record: the raw-SDK example app (examples/raw_sdk.py) talks to the Gemini Live emulator —
   a typed turn, a spoken turn, a tool turn, a barge-in (two turns), a long answer — and the
   emulator's wire log gives every frame of the connection, in order.
2. Replay: a local TLS WebSocket server in a *separate process* plays those frames back (it waits
   for each recorded client frame, then sends the recorded server frames that followed), so the
   real SDK `AsyncSession` parses the real frames and this process's CPU is the app's alone.
3. Measure, per variant, interleaved (each repeat runs every variant once, in a shuffled order):
   the event-loop thread's CPU (`time.thread_time()` in the loop thread, up to the end of the
   session) and the whole process's CPU (`time.process_time()`, up to a flush that returned, so
   the emitter and exporter threads' work is in). Reported per turn: the added CPU paired with the
   untraced run of the same repeat (median, IQR) and the least-disturbed estimate (min − min).

Variants: `untraced`; `voicetrace` (GenAILiveInstrumentor → VoiceTelemetry → BatchSpanProcessor →
counting exporter, no meter provider — what `configure_providers` gives without a metric reader;
with `+otlp`, export on: OTLP/HTTP protobuf to a discarding receiver in the replay server's
process, else off; `+metrics`: an SDK meter provider with a reader, recording only);
`plain-otel` (the floor: the very spans voicetrace exported in its warm-up session — names,
parents, every attribute and event, precomputed — emitted with the OTel SDK directly from a
wrapper over the same SDK method, same processor, same export on/off). The floor does no
recording at all, so voicetrace / floor measures what the voicetrace contract's bookkeeping
costs (every audio chunk, transcript and send is recorded: ~140 calls a turn here) on top of
creating and exporting the same spans.
`service-untraced` / `service` (the service's path, `bench/service_replay.py`): the same script
through the service's own model adapter (`GeminiLive`, which decodes audio frames itself instead
of the SDK's parsing, so the raw-SDK untraced run is no baseline for it), its typed events
consumed; `service` also feeds them to a `SessionTrace` through the bridge's own functions
(`voice.trace_calls`), same processor, export off. Its added CPU is paired with
`service-untraced`, not `untraced`. No client WebSocket, budget or ledger: it measures the
tracing the service adds.
`gemini-live-telemetry` (never a project dependency) is installed by the bench itself, pinned,
into `bench/.peers/` (`pip install --target … --no-deps`; its one dependency, wrapt, comes with
opentelemetry-instrumentation) unless it is importable already or `--no-install-peers` is given;
its console fallback prints its metrics as JSON at exit, after the table.
Not measured, with the reason printed: LangSmith (no Gemini Live wrapper). A run where
voicetrace or the floor exported another number of spans than voicetrace's warm-up session,
or the service a varying number, is refused (no table, exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import service_replay
from examples import raw_sdk
from examples.raw_sdk import Say

SCRIPT: tuple[Say, ...] = (
    Say(text="Hello there!"),
    Say(speech_s=0.8),
    Say(text="Find coffee near me"),
    Say(text="Tell me a long story", barge_in="Stop. What time is it?"),
    Say(text="Tell me everything about the harbour"),
)
PEERS_NOT_MEASURED: dict[str, str] = {}
# Variants whose baseline is another variant than `untraced` (paired the same way).
BASELINES = {"service": "service-untraced"}
Frames = list[tuple[str, bytes]]  # ("in", b"") = wait for a client frame; ("out", payload)


class CountingExporter(SpanExporter):
    """Counts spans; with `inner` (OTLP/HTTP to the local sink) exports them too; with `keep`,
    keeps the spans of the next export calls (the floor's templates)."""

    def __init__(self, inner: SpanExporter | None = None) -> None:
        self.count = 0
        self.inner = inner
        self.kept: list[ReadableSpan] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        if self.kept is not None:
            self.kept.extend(spans)
        return self.inner.export(spans) if self.inner is not None else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


# -- record ------------------------------------------------------------------------------------


async def record() -> tuple[Frames, int]:
    """One session with the emulator; its frames and its number of turns."""
    from google import genai
    from voicetrace.emulator import Emulator

    async with Emulator() as emu:
        os.environ.update(emu.env())
        await raw_sdk.converse(genai.Client(), SCRIPT)
        entries = [e for e in emu.wire if e.kind != "close"]
    connections = {e.connection for e in entries}
    assert len(connections) == 1, "the recorded session must use one connection"
    frames: Frames = []
    turns = 0
    for e in entries:
        if e.direction == "in":
            frames.append(("in", b""))
        else:
            frames.append(("out", json.dumps(e.message).encode()))
            content = (e.message or {}).get("serverContent") or {}
            turns += bool(content.get("turnComplete"))
    return frames, turns


# -- replay server (child process) -------------------------------------------------------------


async def _otlp_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A local OTLP/HTTP receiver that accepts and discards (keep-alive, Content-Length)."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n")
            writer.write(b"Content-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _serve(
    frames: Frames, cert_path: str, key_path: str, port: Any, otlp_port: Any, ready: Any
) -> None:
    import ssl

    from websockets.asyncio.server import serve

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)

    async def handler(ws: Any) -> None:
        for direction, payload in frames:
            if direction == "in":
                await ws.recv()
            else:
                await ws.send(payload)
        await ws.wait_closed()

    async def main() -> None:
        sink = await asyncio.start_server(_otlp_sink, "127.0.0.1", 0)
        otlp_port.value = sink.sockets[0].getsockname()[1]
        async with serve(handler, "127.0.0.1", 0, ssl=ctx, max_size=None) as server:
            port.value = next(iter(server.sockets)).getsockname()[1]
            ready.set()
            await asyncio.Future()

    asyncio.run(main())


# -- variants ------------------------------------------------------------------------------------


class Variant:
    name = "untraced"

    def __init__(self, otlp_endpoint: str | None = None) -> None:
        inner = None
        if otlp_endpoint is not None:  # export on: OTLP/HTTP protobuf to the local sink
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            inner = OTLPSpanExporter(endpoint=otlp_endpoint)
            self.name = f"{self.name}+otlp"
        self.exporter = CountingExporter(inner)
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))

    def start(self) -> None: ...

    def stop(self) -> None: ...

    async def converse(self, client: Any) -> None:
        await raw_sdk.converse(client, SCRIPT)

    def flush(self) -> None:
        self.provider.force_flush(10_000)


class VoicetraceVariant(Variant):
    name = "voicetrace"

    def __init__(self, otlp_endpoint: str | None = None, metrics: bool = False) -> None:
        super().__init__(otlp_endpoint)
        from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from voicetrace.telemetry import PriceTable, VoiceTelemetry

        # Without a metric reader `configure_providers` gives a no-op meter provider (the
        # Langfuse-only deployment); `+metrics`: an SDK one with a reader nobody scrapes here,
        # so only recording is paid (a Prometheus pull reader collects on scrape only).
        meters: MeterProvider = NoOpMeterProvider()
        if metrics:
            meters = SdkMeterProvider(metric_readers=[InMemoryMetricReader()])
            self.name = f"{self.name}+metrics"
        # One per variant, like an app's one per process (each has its emitter thread).
        self.telemetry = VoiceTelemetry(self.provider, meters, pricing=PriceTable.load(None))

    def start(self) -> None:
        from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor

        GenAILiveInstrumentor().instrument(telemetry=self.telemetry, skip_dep_check=True)

    def stop(self) -> None:
        from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor

        GenAILiveInstrumentor().uninstrument()

    def flush(self) -> None:
        assert self.telemetry.force_flush(10.0)


class ServiceVariant(Variant):
    """The service's path (see `bench/service_replay.py`): its own adapter, one process-wide
    `GeminiClients` as in the service; with `traced`, a `SessionTrace` per session fed by the
    bridge's functions, over a `VoiceTelemetry` built as voicetrace's (no meter provider)."""

    def __init__(self, clients: Any, traced: bool) -> None:
        self.name = "service" if traced else "service-untraced"
        super().__init__()
        from opentelemetry.metrics import NoOpMeterProvider
        from voicetrace.telemetry import PriceTable, VoiceTelemetry

        self.clients = clients
        self.registry = service_replay.tools()
        self.telemetry = (
            VoiceTelemetry(self.provider, NoOpMeterProvider(), pricing=PriceTable.load(None))
            if traced
            else None
        )

    async def converse(self, client: Any) -> None:
        await service_replay.converse(self.clients, self.registry, SCRIPT, self.telemetry)

    def flush(self) -> None:
        if self.telemetry is None:
            super().flush()
        else:
            assert self.telemetry.force_flush(10.0)


Template = tuple[str, Any, dict[str, Any], list[tuple[str, dict[str, Any]]]]


def _template(span: ReadableSpan) -> Template:
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    return span.name, span.kind, dict(span.attributes or {}), events


class PlainOtelVariant(Variant):
    """The floor: the very spans voicetrace exported in its warm-up run — names, kinds,
    parents, every attribute and event, precomputed — started and ended with the OTel SDK
    directly from a wrapper over the same SDK method (`receive`): root and connect at the
    first message, each turn's spans (turn, chat, tools, event spans) at its turnComplete.
    What voicetrace spends beyond this is its own work: recording, summaries, mapping."""

    name = "plain-otel"

    def __init__(self, spans: list[ReadableSpan], otlp_endpoint: str | None = None) -> None:
        super().__init__(otlp_endpoint)
        self.spans = spans  # filled by voicetrace's warm-up run, read at start()

    def _templates(self) -> tuple[Template, Template, list[list[Template]]]:
        by_id = {s.context.span_id: s for s in self.spans if s.context is not None}
        root = next(s for s in self.spans if s.parent is None)
        connect: Template | None = None
        turns: dict[int, list[Template]] = {}  # turn span id -> [turn, its children…]
        for s in sorted(self.spans, key=lambda s: s.start_time or 0):
            parent = by_id.get(s.parent.span_id) if s.parent is not None else None
            if parent is root and s.name == "model.connect":
                connect = _template(s)
            elif parent is root and s.context is not None:
                turns[s.context.span_id] = [_template(s)]
            elif parent is not None and parent.context is not None:
                turns[parent.context.span_id].append(_template(s))
        assert connect is not None and turns, "voicetrace's warm-up exported no session"
        return _template(root), connect, list(turns.values())

    def start(self) -> None:
        from google.genai import live

        tracer = self.provider.get_tracer("floor")
        root_t, connect_t, turn_ts = self._templates()
        self._original = live.AsyncSession.__dict__["receive"]
        original = self._original
        self.roots: dict[int, tuple[Any, list[int]]] = {}
        self.root_events = root_t[3]
        roots = self.roots

        def emit(t: Template, parent: Any) -> Any:
            span = tracer.start_span(t[0], context=_ctx(parent), kind=t[1], attributes=t[2])
            for name, attrs in t[3]:
                span.add_event(name, attrs)
            return span

        async def receive(session: Any) -> Any:
            entry = roots.get(id(session))
            if entry is None:  # the session's first receive(): its root and connect spans
                root = tracer.start_span(root_t[0], kind=root_t[1], attributes=root_t[2])
                entry = roots[id(session)] = (root, [0])
                emit(connect_t, root).end()
            async for msg in original(session):
                content = msg.server_content
                if content is not None and content.turn_complete:
                    root, seen = entry
                    turn_t, *children = turn_ts[seen[0] % len(turn_ts)]
                    seen[0] += 1
                    turn = emit(turn_t, root)
                    for child in children:
                        emit(child, turn).end()
                    turn.end()
                yield msg

        live.AsyncSession.receive = receive  # type: ignore[method-assign]

    def stop(self) -> None:
        from google.genai import live

        live.AsyncSession.receive = self._original  # type: ignore[method-assign]

    def flush(self) -> None:
        for root, _ in self.roots.values():  # the session is over: its events, its end
            for name, attrs in self.root_events:
                root.add_event(name, attrs)
            root.end()
        self.roots.clear()
        super().flush()


class GeminiLiveTelemetryVariant(Variant):
    """`gemini-live-telemetry` (PyPI): wrapt patches on the same SDK methods, 65 OTel metrics,
    local sink only (no GCP export, no JSON files, no dashboard). It has no `deactivate()`, so
    its patched class attributes are swapped in and out around each run (public names only)."""

    name = "gemini-live-telemetry"
    PATCHED = (
        ("AsyncSession", "_receive"),
        ("AsyncSession", "send_realtime_input"),
        ("AsyncSession", "send_client_content"),
        ("AsyncSession", "send_tool_response"),
        ("AsyncLive", "connect"),
    )

    def __init__(self) -> None:
        super().__init__()
        import gemini_live_telemetry
        from gemini_live_telemetry.config import InstrumentationConfig
        from google.genai import live

        def grab() -> list[Any]:
            return [getattr(live, c).__dict__[n] for c, n in self.PATCHED]

        self._plain = grab()
        gemini_live_telemetry.activate(
            InstrumentationConfig(
                project_id="local-bench",
                enable_gcp_export=False,
                enable_json_export=False,
                enable_dashboard=False,
            )
        )
        self._patched = grab()
        self._set(self._plain)

    def _set(self, values: list[Any]) -> None:
        from google.genai import live

        for (cls, name), value in zip(self.PATCHED, values, strict=True):
            setattr(getattr(live, cls), name, value)

    def start(self) -> None:
        self._set(self._patched)

    def stop(self) -> None:
        self._set(self._plain)


def _peer_variants() -> list[Variant]:
    peers: list[Variant] = []
    try:
        peers.append(GeminiLiveTelemetryVariant())
    except ImportError:
        PEERS_NOT_MEASURED["gemini-live-telemetry"] = (
            "not installed (the bench installs it into bench/.peers/ unless --no-install-peers)"
        )
    PEERS_NOT_MEASURED["LangSmith Gemini Live wrapper"] = (
        "langsmith 0.15.1 (latest here) has no Live wrapper: langsmith.wrappers.wrap_gemini "
        "wraps generate_content only, nothing under client.aio.live"
    )
    return peers


def _ctx(span: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(span)


# -- measure -------------------------------------------------------------------------------------


async def one_run(client: Any, variant: Variant) -> tuple[float, float, int]:
    """(loop-thread CPU s, process CPU s, spans exported) of one replayed session."""
    variant.start()
    try:
        process0, loop0 = time.process_time(), time.thread_time()
        async with asyncio.timeout(60):
            await variant.converse(client)
        loop_cpu = time.thread_time() - loop0
        before = variant.exporter.count
        variant.flush()
        process_cpu = time.process_time() - process0
    finally:
        variant.stop()
    return loop_cpu, process_cpu, variant.exporter.count - before


async def bench(repeat: int, frames: Frames, turns: int) -> dict[str, list[tuple[float, float]]]:
    from google import genai

    ctx = multiprocessing.get_context("spawn")
    port, otlp_port, ready = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Event()
    from voicetrace.emulator.tls import write_certificates
    from voicetrace.service.voice.gemini import GeminiClients

    clients = GeminiClients()  # the service's one client per process (no deflate), made on use

    with tempfile.TemporaryDirectory() as cert_dir:
        certs = write_certificates(Path(cert_dir))
        args = (frames, str(certs.cert_path), str(certs.key_path), port, otlp_port, ready)
        server = ctx.Process(target=_serve, args=args, daemon=True)
        server.start()
        try:
            if not ready.wait(30):
                raise SystemExit("replay server did not start")
            os.environ.update(
                GOOGLE_GEMINI_BASE_URL=f"https://127.0.0.1:{port.value}",
                SSL_CERT_FILE=str(certs.ca_path),
                GEMINI_API_KEY="replay-key",
            )
            client = genai.Client()
            otlp = f"http://127.0.0.1:{otlp_port.value}/v1/traces"
            template: list[ReadableSpan] = []
            voicetrace = VoicetraceVariant()
            voicetrace.exporter.kept = template  # its warm-up session: the floor's spans
            variants: list[Variant] = [
                Variant(),
                voicetrace,  # warmed up before the floor, which copies its spans
                VoicetraceVariant(otlp),
                VoicetraceVariant(metrics=True),
                PlainOtelVariant(template),
                PlainOtelVariant(template, otlp),
                ServiceVariant(clients, traced=False),
                service := ServiceVariant(clients, traced=True),
                *_peer_variants(),
            ]
            service_spans: list[ReadableSpan] = []
            service.exporter.kept = service_spans  # its warm-up: compared with the floor's
            results: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
            spans: dict[str, set[int]] = {v.name: set() for v in variants}
            for v in variants:  # warm-up: imports, caches, first TLS handshake
                await one_run(client, v)
            voicetrace.exporter.kept = service.exporter.kept = None
            for _ in range(repeat):
                order = variants[:]
                random.shuffle(order)
                for v in order:
                    gc.collect()
                    exported = v.exporter.count
                    loop_cpu, process_cpu, _ = await one_run(client, v)
                    spans[v.name].add(v.exporter.count - exported)
                    results[v.name].append((loop_cpu / turns * 1e3, process_cpu / turns * 1e3))
        finally:
            server.kill()
            await clients.aclose()
    # Root, connect, turn + chat per turn, the tool call, the barge-in event span; the floor
    # copies voicetrace's spans, so both must export exactly that many every run.
    expected = len(template)
    invalid = [] if expected >= 2 + 2 * turns + 1 else [f"voicetrace's warm-up: {expected} spans"]
    for name in spans:  # peers emit metrics, not these spans
        if name.startswith(("voicetrace", "plain-otel")) and spans[name] != {expected}:
            invalid.append(f"{name} exported {sorted(spans[name])} spans, want {expected}")
    if len(spans["service"]) != 1 or spans["service"] == {0}:
        invalid.append(f"service exported {sorted(spans['service'])} spans, want one number")
    print(f"spans per session: voicetrace and floor {expected}, service {sorted(spans['service'])}")
    # The same spans but for the agent's name in `invoke_agent <agent>` (the instrumentor's
    # default vs the service's); if not, `service / plain-otel` is no same-spans ratio: say so.
    kinds = [sorted(s.name.split(" ")[0] for s in group) for group in (template, service_spans)]
    if kinds[0] != kinds[1]:
        print(f"NOTE: the service's spans differ from the floor's: {kinds[1]} vs {kinds[0]}")
    if invalid:
        raise SystemExit("INVALID RUN (no table): " + "; ".join(invalid))
    return results


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def report(results: dict[str, list[tuple[float, float]]], turns: int, repeat: int) -> None:
    """Added cost = a variant's run minus its baseline's run of the same repeat (paired, so
    slow phases of a shared machine cancel out), median and interquartile range. The baseline
    is `untraced` (the raw SDK), or for the service's path `service-untraced` (its adapter)."""
    print(f"\n{turns} turns per session, {repeat} interleaved repeats; ms of CPU per turn")
    noise: dict[str, float] = {}
    for base_name, what in (
        ("untraced", "the SDK's own work"),
        ("service-untraced", "the service adapter's own work, the baseline of `service`"),
    ):
        if base_name not in results:
            continue
        b_loop = _quartiles([r[0] for r in results[base_name]])
        b_proc = _quartiles([r[1] for r in results[base_name]])
        noise[base_name] = (b_proc[2] - b_proc[0]) / 2
        print(
            f"{base_name}: loop {b_loop[1]:.3f} ms (IQR {b_loop[0]:.3f}…{b_loop[2]:.3f}), "
            f"process {b_proc[1]:.3f} ms (IQR {b_proc[0]:.3f}…{b_proc[2]:.3f}) — {what}"
        )
    header = (
        f"\n{'tracer':<22} {'loop added':>11} {'IQR':>15} {'process added':>14} {'IQR':>15} "
        f"{'min-min loop':>13} {'min-min proc':>13}"
    )
    print(header)
    print("-" * len(header))
    added: dict[str, tuple[float, float]] = {}
    least: dict[str, tuple[float, float]] = {}
    for name, rows in results.items():
        if name in noise:
            continue
        base = results[BASELINES.get(name, "untraced")]
        loops = _quartiles([r[0] - b[0] for r, b in zip(rows, base, strict=True)])
        procs = _quartiles([r[1] - b[1] for r, b in zip(rows, base, strict=True)])
        added[name] = (loops[1], procs[1])
        # The least-disturbed runs of each: on a shared machine noise only ever adds CPU.
        min_loop = min(r[0] for r in rows) - min(b[0] for b in base)
        min_proc = min(r[1] for r in rows) - min(b[1] for b in base)
        least[name] = (min_loop, min_proc)
        print(
            f"{name:<22} {loops[1]:>11.3f} {f'{loops[0]:.3f}…{loops[2]:.3f}':>15} "
            f"{procs[1]:>14.3f} {f'{procs[0]:.3f}…{procs[2]:.3f}':>15} "
            f"{min_loop:>13.3f} {min_proc:>13.3f}"
        )
    print("\nRatios of added CPU per turn: paired median | min−min (target)")
    ours = [("voicetrace", "plain-otel"), ("voicetrace+otlp", "plain-otel+otlp")]
    if "service" in added:  # the floor's spans are the instrumentor's, the service's alike
        ours.append(("service", "plain-otel"))
    for vt, floor in ours:
        print(
            f"{vt} / {floor} (same spans): loop {_ratios(added, least, vt, floor, 0)}, "
            f"process {_ratios(added, least, vt, floor, 1)} "
            f"(process ≤ 1.5x: {_verdict(added[vt][1], added[floor][1], 1.5)})"
        )
    peers = [n for n in added if not n.startswith(("voicetrace", "plain-otel", "service"))]
    for mine in ("voicetrace", "service"):
        for name in peers if mine in added else ():
            verdicts = ", ".join(
                f"{what} < 1x: {_verdict(added[mine][i], added[name][i], 1.0)}"
                for i, what in enumerate(("loop", "process"))
            )
            print(
                f"{mine} / {name}: loop {_ratios(added, least, mine, name, 0)}, "
                f"process {_ratios(added, least, mine, name, 1)} ({verdicts})"
            )
    if "service" in added:
        print(
            f"service / voicetrace: loop {_ratios(added, least, 'service', 'voicetrace', 0)}, "
            f"process {_ratios(added, least, 'service', 'voicetrace', 1)}"
        )
    for name, (_, proc) in added.items():
        base_name = BASELINES.get(name, "untraced")
        if abs(proc) < noise[base_name]:
            print(
                f"NOISE: {name}'s added process CPU ({proc:.3f} ms) is below the {base_name} "
                f"run's half-IQR ({noise[base_name]:.3f} ms): use more --repeat or a quieter "
                "machine"
            )
    for name, why in PEERS_NOT_MEASURED.items():
        print(f"Not measured: {name} — {why}")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a (≤ 0: noise)"


def _ratios(
    added: dict[str, tuple[float, float]],
    least: dict[str, tuple[float, float]],
    a: str,
    b: str,
    i: int,
) -> str:
    return f"{_ratio(added[a][i], added[b][i])} | {_ratio(least[a][i], least[b][i])}"


def _verdict(value: float, reference: float, target: float) -> str:
    """Met, or missed by how much (in ms per turn), on the paired medians."""
    limit = reference * target
    if reference > 0 and value <= limit:
        return "met"
    return f"MISSED by {value - limit:.3f} ms/turn"


def _machine() -> str:
    """Date, cores, CPU, Python and the versions that decide the numbers."""
    import datetime
    import platform
    from importlib import metadata

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown CPU",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    versions = []
    for dist in ("google-genai", "opentelemetry-sdk", "gemini-live-telemetry"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    return (
        f"{datetime.date.today()} · nproc {os.cpu_count()} · {cpu} · "
        f"Python {platform.python_version()} · {' · '.join(versions)}"
    )


PEERS_DIR = Path(__file__).resolve().parent / ".peers"
PEER_REQUIREMENT = "gemini-live-telemetry==0.1.1"


def _install_peers() -> None:
    """Make the peer tracer importable: from the environment, else from `bench/.peers/`
    (installed there on first use). A failed install only leaves the peer unmeasured."""
    if importlib.util.find_spec("gemini_live_telemetry") is not None:
        return
    if not (PEERS_DIR / "gemini_live_telemetry").is_dir():
        print(f"installing {PEER_REQUIREMENT} into {PEERS_DIR} (bench only)")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(PEERS_DIR),
                PEER_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"  could not install it: {done.stderr.strip().splitlines()[-1:]}")
            return
    sys.path.insert(0, str(PEERS_DIR))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--no-install-peers",
        action="store_true",
        help="measure gemini-live-telemetry only if it is importable already",
    )
    args = parser.parse_args(argv)
    if not args.no_install_peers:
        _install_peers()
    frames, turns = asyncio.run(record())
    print(f"recorded {len(frames)} frames, {turns} turns")
    print(_machine())
    results = asyncio.run(bench(args.repeat, frames, turns))
    # Paired per repeat: `bench` appends one row per variant per repeat, in repeat order.
    report(results, turns, args.repeat)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
