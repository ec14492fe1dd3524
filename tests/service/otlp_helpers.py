"""Helpers for end-to-end telemetry tests: the service's telemetry exporting over real OTLP.

`exporting_telemetry()` builds the telemetry the service runs with in production (from an
environment mapping: `OTEL_TRACES_EXPORTER=otlp` to a local `OtlpReceiver`, or with
`protocol="grpc"` to a local `GrpcOtlpReceiver`), plus an in-memory
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
from voicetrace.emulator import Emulator
from voicetrace.telemetry import PriceTable, VoiceTelemetry
from voicetrace.telemetry.setup import configure_telemetry

from tests.otlp_grpc_receiver import GrpcOtlpReceiver
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
    receiver: RawOtlpReceiver | GrpcOtlpReceiver
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
    protocol: str = "http/protobuf",
) -> Iterator[Exported]:
    """A receiver in `mode` and the telemetry configured from the standard env vars to it."""
    receiving = (
        GrpcOtlpReceiver(mode, hang_s=hang_s)
        if protocol == "grpc"
        else RawOtlpReceiver(mode, hang_s=hang_s)
    )
    with receiving as receiver:
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
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


# -- the contract of docs/telemetry.md, checked on one exported session ---------------------------


def _keys(text: str) -> tuple[str, ...]:
    return tuple(text.split())


LEVELS = frozenset({"DEBUG", "DEFAULT", "WARNING", "ERROR"})
END_REASONS = frozenset(
    _keys(
        """
        completed interrupted tool_error model_error client_disconnect server_shutdown
        budget_exhausted internal_error orphaned
        """
    )
)
TRIGGERS = frozenset({"user_audio", "user_text", "activity", "transcript", "model"})
WARN_REASONS = frozenset({"tool_error", "client_disconnect", "server_shutdown", "budget_exhausted"})
ERROR_REASONS = frozenset({"model_error", "internal_error"})


OBSERVED_EVENTS = frozenset(
    {
        "user.barge_in",
        "model.interrupted",
        "model.go_away",
        "model.reconnected",
        "model.error",
        "voice.budget.warning",
        "voice.budget.paused",
    }
)
COMMON_KEYS = (*IDS, "langfuse.environment", "langfuse.observation.type")
# Required keys per span, from the attribute reference of docs/telemetry.md.
ROOT_KEYS = _keys(
    """
    langfuse.trace.name langfuse.trace.tags gen_ai.agent.name gen_ai.provider.name
    langfuse.trace.metadata.model langfuse.trace.metadata.agent langfuse.trace.metadata.turns
    langfuse.trace.metadata.interruptions langfuse.trace.metadata.tool_errors
    langfuse.trace.metadata.end_reason langfuse.trace.metadata.duration_s
    voice.session.recording_consent voice.session.end_reason voice.session.turns
    voice.session.tool_calls voice.session.tool_errors voice.session.interruptions
    voice.session.reconnects voice.session.duration_s voice.session.audio_in_s
    voice.session.audio_out_s voice.session.input_tokens voice.session.output_tokens
    """
)
CONNECT_KEYS = ("gen_ai.provider.name", "voice.connect.resumed")
TURN_KEYS = _keys(
    """
    gen_ai.operation.name gen_ai.agent.name gen_ai.provider.name
    voice.turn.number voice.turn.end_reason voice.turn.trigger voice.turn.interrupted
    voice.turn.user_speech_ms voice.turn.endpointing_ms voice.turn.response_ms
    voice.turn.total_ms voice.turn.tool_ms voice.audio.input_ms voice.audio.output_ms
    voice.audio.heard_ms voice.audio.heard_source langfuse.observation.metadata.turn
    langfuse.observation.metadata.end_reason langfuse.observation.metadata.interrupted
    langfuse.observation.metadata.total_ms
    """
)
CHAT_KEYS = _keys(
    """
    gen_ai.operation.name gen_ai.provider.name gen_ai.request.model gen_ai.response.model
    gen_ai.output.type gen_ai.response.finish_reasons voice.turn.number voice.audio.output_ms
    voice.audio.heard_ms voice.audio.heard_source voice.audio.unheard_ms
    langfuse.observation.metadata.turn
    """
)
CHAT_USAGE_KEYS = _keys(
    """
    gen_ai.usage.input_tokens gen_ai.usage.output_tokens gen_ai.usage.cache_read.input_tokens
    gen_ai.usage.reasoning.output_tokens voice.usage.tool_use_prompt_tokens
    voice.usage.reported_total_tokens langfuse.observation.usage_details
    langfuse.observation.cost_details voice.cost.usd voice.cost.usd_decimal
    voice.cost.price_model langfuse.observation.metadata.cost_usd
    """
)
TOOL_KEYS = _keys(
    """
    gen_ai.operation.name gen_ai.tool.name gen_ai.tool.call.id gen_ai.tool.type
    voice.tool.status voice.tool.non_blocking voice.turn.number
    langfuse.observation.metadata.status
    """
)
# Only the generation carries usage or cost (Rule 2), and only it names a model: a model
# attribute would make Langfuse type any other span a GENERATION.
GENERATION_ONLY = (
    "gen_ai.usage.",
    "langfuse.observation.usage_details",
    "langfuse.observation.cost_details",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "voice.cost.",
)


@dataclass
class Tree:
    """One session's exported spans, by role."""

    root: ReceivedSpan
    connects: list[ReceivedSpan]
    turns: list[ReceivedSpan]
    chats: dict[int, ReceivedSpan]
    tools: dict[int, list[ReceivedSpan]]
    # zero-length EVENT observations (barge-in, go-away, …), under a turn or the root
    events: list[ReceivedSpan] = field(default_factory=list)

    def event_spans(self, name: str) -> list[ReceivedSpan]:
        return [e for e in self.events if e.name == name]

    def turn(self, number: int) -> ReceivedSpan:
        return next(t for t in self.turns if t.attributes["voice.turn.number"] == number)


def _missing(span: ReceivedSpan, keys: tuple[str, ...]) -> list[str]:
    return [key for key in keys if key not in span.attributes]


def expected_level(end_reason: str) -> str:
    if end_reason in ERROR_REASONS:
        return "ERROR"
    return "WARNING" if end_reason in WARN_REASONS else "DEFAULT"


def assert_trace_contract(
    spans: list[ReceivedSpan],
    *,
    session_id: str,
    user_id: str,
    model: str,
    environment: str = "development",
    consent: bool = False,
    agent: str = "voicetrace",
) -> Tree:
    """Assert the span tree, attribute and level contract of docs/telemetry.md on one
    session's exported spans; return them by role for scenario-specific assertions."""
    from voicetrace.telemetry.keys import CONTENT_KEYS

    roots = [s for s in spans if not s.parent_span_id]
    assert [s.name for s in roots] == ["voice_session"], [s.name for s in spans]
    root = roots[0]
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "a span was exported twice"
    assert {s.trace_id for s in spans} == {root.trace_id}, "one trace per session"
    connects = [s for s in spans if s.name == "model.connect"]
    turns = by_prefix(spans, "invoke_agent ")
    chats = by_prefix(spans, "chat ")
    tools = by_prefix(spans, "execute_tool ")
    observed = [s for s in spans if s.attributes.get("langfuse.observation.type") == "event"]
    assert len(connects) + len(turns) + len(chats) + len(tools) + len(observed) + 1 == len(spans), (
        sorted(s.name for s in spans)
    )
    for span in spans:
        a = span.attributes
        assert {k: a.get(k) for k in IDS} == {
            "session.id": session_id,
            "user.id": user_id,
            "gen_ai.conversation.id": session_id,
        }, span.name
        assert not _missing(span, COMMON_KEYS), (span.name, _missing(span, COMMON_KEYS))
        assert a["langfuse.environment"] == environment
        # Trace attributes on every span (Langfuse v4 rows; a live/crashed session is named).
        assert a["langfuse.trace.name"] == "voice_session", span.name
        assert a.get("langfuse.trace.tags") == root.attributes.get("langfuse.trace.tags")
        assert not {"langfuse.release", "langfuse.version"} & set(a), span.name
        assert a.get("langfuse.observation.level") in LEVELS, (span.name, a)
        assert (span.status_code == STATUS_ERROR) == (a["langfuse.observation.level"] == "ERROR")
        assert span.end_ns >= span.start_ns > 0
        if not consent:
            assert not CONTENT_KEYS & set(a), (span.name, sorted(CONTENT_KEYS & set(a)))
        if not span.name.startswith("chat "):
            leaked = [k for k in a if k.startswith(GENERATION_ONLY)]
            assert not leaked, (span.name, leaked)

    # root
    a = root.attributes
    assert root.kind == KIND_INTERNAL
    assert not _missing(root, ROOT_KEYS), _missing(root, ROOT_KEYS)
    reason = a["voice.session.end_reason"]
    assert reason in END_REASONS
    assert a["langfuse.observation.type"] == "span"
    assert a["langfuse.trace.name"] == "voice_session"
    assert a["langfuse.trace.metadata.end_reason"] == reason
    assert a["langfuse.trace.metadata.model"] == model
    assert a["voice.session.recording_consent"] is consent
    assert a["langfuse.observation.level"] == expected_level(reason)
    assert a["voice.session.turns"] == a["langfuse.trace.metadata.turns"] == len(turns)
    assert a["voice.session.tool_calls"] == len(tools)
    interrupted = [t for t in turns if t.attributes["voice.turn.interrupted"]]
    assert a["voice.session.interruptions"] == len(interrupted)
    assert a["voice.session.reconnects"] == len(connects) - 1
    assert a["voice.session.input_tokens"] == sum(
        c.attributes.get("gen_ai.usage.input_tokens", 0) for c in chats
    )
    assert a["voice.session.output_tokens"] == sum(
        c.attributes.get("gen_ai.usage.output_tokens", 0) for c in chats
    )
    costs = [
        Decimal(c.attributes["voice.cost.usd_decimal"])
        for c in chats
        if "voice.cost.usd" in c.attributes
    ]
    if costs:
        assert a["voice.session.cost_usd"] == a["langfuse.trace.metadata.cost_usd"]
        assert a["voice.session.cost_usd"] == float(sum(costs, Decimal(0)))

    # connects: children of the root, plain SPANs
    assert connects, "every session connects once"
    for c in connects:
        assert c.parent_span_id == root.span_id and c.kind == KIND_INTERNAL
        assert not _missing(c, CONNECT_KEYS), _missing(c, CONNECT_KEYS)
        assert c.attributes["langfuse.observation.type"] == "span"
    assert connects[0].attributes["voice.connect.resumed"] is False

    # turns: children of the root, numbered 1..n without gaps
    assert [t.attributes["voice.turn.number"] for t in turns] == list(range(1, len(turns) + 1))
    chat_of: dict[int, ReceivedSpan] = {}
    tools_of: dict[int, list[ReceivedSpan]] = {}
    for t in turns:
        ta = t.attributes
        n = ta["voice.turn.number"]
        assert t.name == f"invoke_agent {agent}" and t.kind == KIND_INTERNAL
        assert t.parent_span_id == root.span_id
        assert not _missing(t, TURN_KEYS), (n, _missing(t, TURN_KEYS))
        assert ta["langfuse.observation.type"] == "agent"
        assert ta["gen_ai.operation.name"] == "invoke_agent"
        turn_reason = ta["voice.turn.end_reason"]
        assert turn_reason in END_REASONS and ta["voice.turn.trigger"] in TRIGGERS
        assert ta["langfuse.observation.level"] == expected_level(turn_reason), (n, turn_reason)
        assert ta["langfuse.observation.metadata.turn"] == n
        assert ta["langfuse.observation.metadata.end_reason"] == turn_reason
        assert ta["langfuse.observation.metadata.interrupted"] is ta["voice.turn.interrupted"]
        phases = ("user_speech_ms", "endpointing_ms", "response_ms")
        values = [ta[f"voice.turn.{p}"] for p in phases]
        assert all(v >= 0 for v in values), values
        # Contiguous phases: their sum *is* the total (exactly, as documented).
        assert values[0] + values[1] + values[2] == ta["voice.turn.total_ms"], (n, values)
        assert ta["langfuse.observation.metadata.total_ms"] == round(ta["voice.turn.total_ms"], 1)
        assert (t.end_ns - t.start_ns) / 1e6 >= ta["voice.turn.total_ms"] - 1e-3
        if "voice.turn.ttfa_ms" in ta:
            assert ta["langfuse.observation.metadata.ttfa_ms"] == round(ta["voice.turn.ttfa_ms"], 1)
        children = [s for s in spans if s.parent_span_id == t.span_id and s not in observed]
        turn_chats = [s for s in children if s.name.startswith("chat ")]
        turn_tools = [s for s in children if s.name.startswith("execute_tool ")]
        assert len(turn_chats) + len(turn_tools) == len(children), [s.name for s in children]
        assert len(turn_chats) <= 1
        tools_of[n] = turn_tools
        if turn_chats:
            chat_of[n] = turn_chats[0]
            _assert_chat(turn_chats[0], t, model)
        for tool in turn_tools:
            _assert_tool(tool, n)
    assert len(chat_of) == len(chats) and sum(map(len, tools_of.values())) == len(tools)
    turn_ids = {t.span_id for t in turns}
    for ev in observed:
        # Zero length, under a turn or the root; Langfuse's EVENT keeps its start time only.
        assert ev.start_ns == ev.end_ns, ev.name
        assert ev.parent_span_id in turn_ids | {root.span_id}, ev.name
        assert ev.name in OBSERVED_EVENTS, ev.name
        if ev.parent_span_id in turn_ids:
            turn = by_id[ev.parent_span_id]
            assert turn.start_ns <= ev.start_ns, ev.name
            assert ev.attributes["voice.turn.number"] == turn.attributes["voice.turn.number"]
            # the span event stays on the turn for other backends
            assert ev.name in [n for n, _ in turn.events], ev.name
        else:
            assert ev.name in [n for n, _ in root.events], ev.name
    return Tree(root, connects, turns, chat_of, tools_of, observed)


def _assert_chat(chat: ReceivedSpan, turn: ReceivedSpan, model: str) -> None:
    from datetime import datetime

    a, ta = chat.attributes, turn.attributes
    n = ta["voice.turn.number"]
    assert chat.name == f"chat {model}" and chat.kind == KIND_CLIENT
    assert not _missing(chat, CHAT_KEYS), (n, _missing(chat, CHAT_KEYS))
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == model
    assert a["voice.turn.number"] == a["langfuse.observation.metadata.turn"] == n
    reason = ta["voice.turn.end_reason"]
    finish = {"completed": "stop", "tool_error": "stop"}.get(reason, reason)
    assert a["gen_ai.response.finish_reasons"] == (finish,)
    assert a["gen_ai.output.type"] == ("speech" if a["voice.audio.output_ms"] > 0 else "text")
    assert a["voice.audio.output_ms"] == ta["voice.audio.output_ms"]
    assert a["voice.audio.unheard_ms"] == a["voice.audio.output_ms"] - a["voice.audio.heard_ms"]
    # The generation runs t1 → t3 inside its turn (t0 → …): its edges are the phase boundaries.
    user_speech_ms = (chat.start_ns - turn.start_ns) / 1e6
    assert abs(user_speech_ms - ta["voice.turn.user_speech_ms"]) < 1e-3, (n, user_speech_ms)
    total_ms = (chat.end_ns - turn.start_ns) / 1e6
    assert abs(total_ms - ta["voice.turn.total_ms"]) < 1e-3, (n, total_ms)
    if "voice.turn.ttfa_ms" in ta:
        ttfc = a["gen_ai.response.time_to_first_chunk"]
        assert abs(ttfc * 1000 - ta["voice.turn.ttfa_ms"]) < 1e-3
        first = datetime.fromisoformat(a["langfuse.observation.completion_start_time"])
        assert first.utcoffset() is not None and first.utcoffset().total_seconds() == 0
        assert abs(first.timestamp() - (chat.start_ns / 1e9 + ttfc)) < 2e-6
    level = "ERROR" if reason in ERROR_REASONS else "DEFAULT"
    if a.get("voice.usage.estimated"):
        assert a["voice.usage.missing"] is True  # estimated because Gemini reported none
    if a.get("voice.usage.missing"):
        level = "ERROR" if level == "ERROR" else "WARNING"
    if a.get("voice.usage.missing") and not a.get("voice.usage.estimated"):
        assert not [k for k in a if k.startswith("gen_ai.usage.")]
    else:
        assert not _missing(chat, CHAT_USAGE_KEYS), (n, _missing(chat, CHAT_USAGE_KEYS))
        usage = json.loads(a["langfuse.observation.usage_details"])
        assert usage["total"] == sum(v for k, v in usage.items() if k != "total")
        assert all(k == "total" or k.startswith(("input_", "output_")) for k in usage)
        assert a["gen_ai.usage.input_tokens"] + a["gen_ai.usage.output_tokens"] == usage["total"]
        cost = json.loads(a["langfuse.observation.cost_details"])
        assert set(cost) == set(usage)
        exact = Decimal(a["voice.cost.usd_decimal"])
        assert a["voice.cost.usd"] == float(exact) == cost["total"]
        assert a["langfuse.observation.metadata.cost_usd"] == float(exact)
        assert "gen_ai.usage.cost" not in a
    assert a["langfuse.observation.level"] == level, (n, a["langfuse.observation.level"])


def _assert_tool(tool: ReceivedSpan, turn_number: int) -> None:
    a = tool.attributes
    assert not _missing(tool, TOOL_KEYS), _missing(tool, TOOL_KEYS)
    assert tool.kind == KIND_INTERNAL
    assert tool.name == f"execute_tool {a['gen_ai.tool.name']}"
    assert a["langfuse.observation.type"] == "tool"
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.type"] == "function"
    assert a["voice.turn.number"] == turn_number
    status = a["voice.tool.status"]
    assert status in ("ok", "error", "cancelled", "abandoned")
    assert a["langfuse.observation.metadata.status"] == status
    if status in ("ok", "error"):
        assert a["voice.tool.duration_ms"] >= 0
    level = {"error": "ERROR", "abandoned": "WARNING"}.get(status, "DEFAULT")
    assert a["langfuse.observation.level"] == level


def assert_same_as_recorded(received: list[ReceivedSpan], recorded: list[Any]) -> None:
    """What went over OTLP is exactly what the SDK recorded: no span, attribute or event lost
    or altered by the export (sequences arrive as tuples, like the SDK's own attributes)."""
    rx = {s.span_id: s for s in received}
    mem = {f"{s.context.span_id:016x}": s for s in recorded}
    assert set(rx) == set(mem)
    for span_id, span in mem.items():
        got = rx[span_id]
        assert got.name == span.name
        assert got.attributes == dict(span.attributes), span.name
        assert (got.start_ns, got.end_ns) == (span.start_time, span.end_time)
        assert got.parent_span_id == (f"{span.parent.span_id:016x}" if span.parent else "")
        assert [(n, a) for n, a in got.events] == [
            (e.name, dict(e.attributes)) for e in span.events
        ]
