"""Helpers for end-to-end telemetry tests: the service's telemetry exporting over real OTLP/HTTP.

`exporting_telemetry()` builds the telemetry the service runs with in production (from an
environment mapping: `OTEL_TRACES_EXPORTER=otlp` to a local `OtlpReceiver`), plus an in-memory
copy of every span, so a test can compare what left the process with what was recorded.
The expectations here (usage split, cost) are computed from the emulator's wire log and the
documented rules, independently of `telemetry/`'s own arithmetic.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.emulator import Emulator
from telemetry import PriceTable, VoiceTelemetry
from telemetry.setup import configure_telemetry
from tests.otlp_receiver import Mode, OtlpReceiver, ReceivedSpan

IDS = ("session.id", "user.id", "gen_ai.conversation.id")
KIND_INTERNAL, KIND_CLIENT = 1, 3  # OTLP Span.SpanKind values
STATUS_UNSET, STATUS_ERROR = 0, 2  # OTLP Status.StatusCode values


class RawOtlpReceiver(OtlpReceiver):
    """An `OtlpReceiver` that also keeps every request's decompressed body and headers, so a
    test can scan the exact bytes a backend would store (not only the decoded attributes)."""

    def __init__(self, mode: Mode = "ok", hang_s: float = 10.0) -> None:
        super().__init__(mode, hang_s)
        self.bodies: list[bytes] = []
        self.header_blobs: list[str] = []

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        encoding = (h.headers.get("Content-Encoding") or "").lower()
        plain = body
        with contextlib.suppress(Exception):
            plain = {"gzip": gzip.decompress, "deflate": zlib.decompress}.get(
                encoding, lambda b: b
            )(body)
        with self._lock:
            self.bodies.append(plain)
            self.header_blobs.append(str(h.headers))
        h.rfile = io.BytesIO(body)  # the base class reads and decodes the same body again
        super()._handle(h)

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self.bodies) + "".join(self.header_blobs).encode()


@dataclass
class Exported:
    """The telemetry under test, its OTLP receiver and an in-memory copy of every span."""

    telemetry: VoiceTelemetry
    receiver: RawOtlpReceiver
    memory: InMemorySpanExporter
    env: dict[str, str] = field(default_factory=dict)

    def flush(self) -> None:
        # Synchronous exports: once it returns, the receiver has decoded every exported span.
        assert self.telemetry.force_flush(5.0), "telemetry flush timed out"

    def spans(self, session_id: str | None = None) -> list[ReceivedSpan]:
        self.flush()
        return [
            s
            for s in self.receiver.spans
            if session_id is None or s.attributes.get("session.id") == session_id
        ]

    def recorded(self, session_id: str | None = None) -> list[Any]:
        return [
            s
            for s in self.memory.get_finished_spans()
            if session_id is None or s.attributes.get("session.id") == session_id
        ]


@contextlib.contextmanager
def exporting_telemetry(
    mode: Mode = "ok",
    *,
    capture: bool = False,
    hang_s: float = 10.0,
    export_timeout_s: float = 1.0,
    schedule_delay_ms: float = 50,
    usage_wait_s: float = 0.5,
    shutdown_s: float = 2.0,
) -> Iterator[Exported]:
    """A receiver in `mode` and the telemetry configured from the standard env vars to it."""
    with RawOtlpReceiver(mode, hang_s=hang_s) as receiver:
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_SERVICE_NAME": "voicetrace-e2e",
        }
        if capture:
            env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
        memory = InMemorySpanExporter()
        telemetry = configure_telemetry(
            "voicetrace-e2e",
            pricing=PriceTable.load(None),
            usage_wait_s=usage_wait_s,
            env=env,
            extra_processors=[SimpleSpanProcessor(memory)],
            export_timeout_s=export_timeout_s,
            schedule_delay_ms=schedule_delay_ms,
        )
        try:
            yield Exported(telemetry, receiver, memory, env)
        finally:
            telemetry.shutdown(shutdown_s)


# -- the tree ------------------------------------------------------------------------------------


def by_prefix(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return sorted(
        (s for s in spans if s.name.startswith(prefix)),
        key=lambda s: (s.attributes.get("voice.turn.number", 0), s.start_ns),
    )


def one(spans: list[ReceivedSpan], prefix: str) -> ReceivedSpan:
    found = by_prefix(spans, prefix)
    assert len(found) == 1, f"expected one {prefix!r} span, got {[s.name for s in spans]}"
    return found[0]


def events(span: ReceivedSpan, name: str) -> list[dict[str, Any]]:
    return [attrs for ev_name, attrs in span.events if ev_name == name]


# -- what the emulator said ------------------------------------------------------------------------


def wire_usage_by_turn(emulator: Emulator) -> list[dict[str, Any]]:
    """The last `usageMetadata` the emulator sent before each `turnComplete`, in order.

    Read from the emulator's own wire log (the decoded JSON of each frame it sent), across
    connections (a resumed connection continues the conversation)."""
    turns: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for entry in emulator.wire.select(direction="out"):
        message = entry.message or {}
        if "usageMetadata" in message:
            last = message["usageMetadata"]
        if (message.get("serverContent") or {}).get("turnComplete"):
            assert last is not None, "a turnComplete without any usageMetadata before it"
            turns.append(last)
            last = None
    return turns


def _by_modality(details: list[dict[str, Any]] | None) -> dict[str, int]:
    out = {"TEXT": 0, "AUDIO": 0, "IMAGE": 0}
    for d in details or ():
        modality = {"VIDEO": "IMAGE"}.get(d["modality"], d["modality"])
        out[modality if modality in out else "TEXT"] += int(d.get("tokenCount", 0))
    return out


def expected_usage(meta: Mapping[str, Any]) -> dict[str, int]:
    """Langfuse `usage_details` per docs/telemetry.md, from one raw `usageMetadata` (no cache
    in these sessions): prompt by modality, tool-use prompt, response by modality, thoughts."""
    prompt, response = meta.get("promptTokenCount", 0), meta.get("responseTokenCount", 0)
    p = _by_modality(meta.get("promptTokensDetails"))
    r = _by_modality(meta.get("responseTokensDetails"))
    details = {
        "input_text_tokens": prompt - p["AUDIO"] - p["IMAGE"],  # undetailed prompt is text
        "input_audio_tokens": p["AUDIO"],
        "input_image_tokens": p["IMAGE"],
        "input_cached_tokens": meta.get("cachedContentTokenCount", 0),
        "input_tool_use_tokens": meta.get("toolUsePromptTokenCount", 0),
        "output_text_tokens": r["TEXT"],
        "output_audio_tokens": response - r["TEXT"] - r["IMAGE"],  # undetailed output is audio
        "output_image_tokens": r["IMAGE"],
        "output_reasoning_tokens": meta.get("thoughtsTokenCount", 0),
    }
    details["total"] = sum(details.values())
    return details


def expected_cost(usage: Mapping[str, int], prices: PriceTable, model: str) -> dict[str, Decimal]:
    """USD per usage key: the price table's per-1M-token prices applied to the counts.
    Tool-use prompt tokens are text input here (the emulator details them as TEXT); thinking
    bills as text output."""
    price = prices.lookup(model)
    assert price is not None, f"no price for {model}"
    per_token = {
        "input_text_tokens": price.input["text"],
        "input_audio_tokens": price.input["audio"],
        "input_image_tokens": price.input["image"],
        "input_cached_tokens": price.input["text"],  # zero in these sessions
        "input_tool_use_tokens": price.input["text"],
        "output_text_tokens": price.output["text"],
        "output_audio_tokens": price.output["audio"],
        "output_image_tokens": price.output["text"],
        "output_reasoning_tokens": price.output["text"],
    }
    cost = {key: Decimal(usage[key]) * p / Decimal(1_000_000) for key, p in per_token.items()}
    cost["total"] = sum(cost.values(), Decimal(0))
    return cost


def json_attr(span: ReceivedSpan, key: str) -> Any:
    return json.loads(span.attributes[key])
