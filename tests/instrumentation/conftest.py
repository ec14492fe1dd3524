"""Fixtures for the drop-in instrumentor: a real `VoiceTelemetry` over the real OTel SDK with an
in-memory exporter, the instrumentor installed around one test (and always uninstalled), and a
span-tree "shape" — the parts of the span contract two runs of the same turns must share.

Nothing of ours is mocked; the SDK talks to the emulator over TLS WebSockets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from voicetrace.telemetry import PriceTable, VoiceTelemetry
from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor

ROOT_KEYS = (
    "langfuse.observation.type",
    "gen_ai.provider.name",
    "gen_ai.agent.name",
    "voice.session.end_reason",
    "voice.session.turns",
    "voice.session.tool_calls",
    "voice.session.tool_errors",
    "voice.session.interruptions",
    "voice.session.reconnects",
    "voice.session.input_tokens",
    "voice.session.output_tokens",
    "voice.session.cost_usd",
)
TURN_KEYS = (
    "langfuse.observation.type",
    "gen_ai.operation.name",
    "voice.turn.number",
    "voice.turn.end_reason",
    "voice.turn.trigger",
    "voice.turn.interrupted",
)
CHAT_KEYS = (
    "langfuse.observation.type",
    "gen_ai.request.model",
    "gen_ai.output.type",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "langfuse.observation.usage_details",
    "langfuse.observation.cost_details",
    "voice.cost.usd",
    "voice.cost.usd_decimal",
    "voice.usage.missing",
)
TOOL_KEYS = ("langfuse.observation.type", "gen_ai.tool.name", "voice.tool.status")


@dataclass
class Traced:
    telemetry: VoiceTelemetry
    memory: InMemorySpanExporter
    instrumentor: GenAILiveInstrumentor

    def spans(self) -> list[ReadableSpan]:
        assert self.telemetry.force_flush(5.0)
        return list(self.memory.get_finished_spans())


def _pick(span: ReadableSpan, keys: tuple[str, ...]) -> dict[str, Any]:
    attrs = span.attributes or {}
    out: dict[str, Any] = {}
    for key in keys:
        if key in attrs:
            value = attrs[key]
            if isinstance(value, str) and value.startswith("{"):
                value = json.loads(value)
            out[key] = tuple(value) if isinstance(value, list | tuple) else value
    return out


def shape(spans: list[ReadableSpan]) -> dict[str, Any]:
    """One trace as the contract sees it: the tree (root → connects, turns → chat + tools)
    with the attributes that must not depend on timing. Fails on a stray or orphan span."""
    roots = [s for s in spans if s.name == "voice_session"]
    assert len(roots) == 1, [s.name for s in spans]
    root = roots[0]
    rid = root.context.span_id  # type: ignore[union-attr]

    def children(parent: ReadableSpan) -> list[ReadableSpan]:
        pid = parent.context.span_id  # type: ignore[union-attr]
        return [s for s in spans if s.parent is not None and s.parent.span_id == pid]

    def observed(parent: ReadableSpan) -> list[str]:
        """Voice events as Langfuse EVENT observations (zero-length child spans)."""
        return sorted(
            s.name for s in children(parent)
            if (s.attributes or {}).get("langfuse.observation.type") == "event"
        )  # fmt: skip

    top = children(root)
    turns = sorted(
        (s for s in top if s.name.startswith("invoke_agent")),
        key=lambda s: (s.attributes or {})["voice.turn.number"],
    )
    connects = [s for s in top if s.name == "model.connect"]
    assert len(top) == len(turns) + len(connects) + len(observed(root)), [s.name for s in top]
    out: dict[str, Any] = {
        "root": _pick(root, ROOT_KEYS),
        "root_events": sorted(e.name for e in root.events),
        "root_observed": observed(root),
        "connects": [
            ((s.attributes or {}).get("voice.connect.resumed"), s.status.status_code.name)
            for s in connects
        ],
        "turns": [],
    }
    for turn in turns:
        kids = children(turn)
        chats = [s for s in kids if s.name.startswith("chat ")]
        tools = [s for s in kids if s.name.startswith("execute_tool ")]
        events = observed(turn)
        assert len(kids) == len(chats) + len(tools) + len(events), [s.name for s in kids]
        assert len(chats) <= 1
        out["turns"].append(
            {
                "turn": _pick(turn, TURN_KEYS),
                # Playback marks come from the voice client's player, which a raw app lacks.
                "events": sorted({e.name for e in turn.events if not e.name.startswith("client.")}),
                "chat": _pick(chats[0], CHAT_KEYS) if chats else None,
                "tools": sorted(tuple(_pick(t, TOOL_KEYS).items()) for t in tools),
            }
        )
    assert all(s.context.trace_id == root.context.trace_id for s in spans)  # type: ignore[union-attr]
    assert rid is not None
    return out


@pytest.fixture
def traced() -> Iterator[Callable[..., Traced]]:
    """`t = traced(**instrument_kwargs)`: the instrumentor on, spans in memory; off after."""
    made: list[Traced] = []

    def make(**kwargs: Any) -> Traced:
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        telemetry = kwargs.pop("telemetry", None) or VoiceTelemetry(
            provider,
            pricing=PriceTable.load(None),
            usage_wait_s=0.5,
            capture_content=kwargs.pop("capture_content", False),
        )
        instrumentor = GenAILiveInstrumentor()
        instrumentor.instrument(telemetry=telemetry, **kwargs)
        t = Traced(telemetry, memory, instrumentor)
        made.append(t)
        return t

    yield make
    for t in made:
        if t.instrumentor.is_instrumented_by_opentelemetry:
            t.instrumentor.uninstrument()
        t.telemetry.shutdown(2.0)
