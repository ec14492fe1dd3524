"""Langfuse's documented OTel → observation rules, applied to decoded OTLP spans.

Langfuse answers 200 before converting, so a wrong attribute loses data silently. This module
re-implements the rules of its `OtelIngestionProcessor` / `ObservationTypeMapper` (as
documented for v3.225 / v4.16) so tests can assert what Langfuse would build from our spans.
Only the rules we rely on are implemented; where a rule would drop an observation, it raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.otlp_receiver import ReceivedSpan

TYPES = {
    "span",
    "generation",
    "event",
    "embedding",
    "agent",
    "tool",
    "chain",
    "retriever",
    "guardrail",
    "evaluator",
}
LEVELS = {"DEBUG", "DEFAULT", "WARNING", "ERROR"}
_GENERATION_OPS = {"chat", "completion", "text_completion", "generate_content", "generate"}
_MODEL_KEYS = ("langfuse.observation.model.name", "gen_ai.response.model", "gen_ai.request.model")
_KEEPS_USAGE = {
    "generation",
    "agent",
    "tool",
    "chain",
    "retriever",
    "guardrail",
    "evaluator",
    "embedding",
}
STATUS_ERROR = 2  # OTLP Status.STATUS_CODE_ERROR


class DroppedObservation(Exception):
    """Langfuse would drop this observation (e.g. an invalid level in v3)."""


@dataclass
class Observation:
    id: str
    parent_id: str | None
    type: str
    name: str
    level: str
    status_message: str | None
    model: str | None
    usage: dict[str, int]
    cost: dict[str, float]
    completion_start_time: str | None
    input: Any
    output: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    # v4 writes each observation as its own row with the trace name and tags of *its* span.
    trace_name: str | None = None
    trace_tags: tuple[str, ...] = ()


@dataclass
class Trace:
    name: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    environment: str = "default"
    release: str | None = None
    input: Any = None
    output: Any = None


def observation_type(a: dict[str, Any]) -> str:
    t = a.get("langfuse.observation.type")
    if t in TYPES:
        return str(t)
    op = a.get("gen_ai.operation.name")
    if op in _GENERATION_OPS:
        return "generation"
    if op == "embeddings":
        return "embedding"
    if op in ("invoke_agent", "create_agent"):
        return "agent"
    if op == "execute_tool":
        return "tool"
    if "gen_ai.tool.name" in a or "gen_ai.tool.call.id" in a:
        return "tool"
    if any(key in a for key in _MODEL_KEYS):
        return "generation"
    return "span"


def _usage(a: dict[str, Any]) -> dict[str, int]:
    raw = a.get("langfuse.observation.usage_details")
    if raw is not None:  # replaces every other usage source
        parsed = json.loads(raw)
        return {key: v for key, v in parsed.items() if isinstance(v, int) and v >= 0}
    usage: dict[str, int] = {}
    for key, v in a.items():
        if not key.startswith("gen_ai.usage.") or not isinstance(v, int) or v < 0:
            continue
        name = key.removeprefix("gen_ai.usage.")
        name = {
            "input_tokens": "input",
            "output_tokens": "output",
            "total_tokens": "total",
            "cache_read.input_tokens": "input_cached_tokens",
        }.get(name, name)
        usage[name] = v
    if "input_cached_tokens" in usage and "input" in usage:
        usage["input"] -= usage["input_cached_tokens"]
    if usage and "total" not in usage:
        usage["total"] = sum(usage.values())
    return usage


def _cost(a: dict[str, Any]) -> dict[str, float]:
    raw = a.get("langfuse.observation.cost_details")
    if raw is not None:
        parsed = json.loads(raw)
        return {k: float(v) for k, v in parsed.items() if isinstance(v, int | float) and v >= 0}
    if "gen_ai.usage.cost" in a:
        return {"total": float(a["gen_ai.usage.cost"])}
    return {}


def _metadata(a: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(a.get(prefix), str):
        out.update(json.loads(a[prefix]))
    for key, v in a.items():
        if key.startswith(prefix + "."):
            out[key[len(prefix) + 1 :]] = v
    return out


def to_observation(span: ReceivedSpan) -> Observation:
    a = span.attributes
    obs_type = observation_type(a)
    level = a.get("langfuse.observation.level")
    if level is not None and level not in LEVELS:
        raise DroppedObservation(f"{span.name}: level {level!r} is not one of {sorted(LEVELS)}")
    if level is None:
        level = "ERROR" if span.status_code == STATUS_ERROR else "DEFAULT"
    keeps = obs_type in _KEEPS_USAGE and a.get("gen_ai.operation.name") != "invoke_agent"
    model = next((a[key] for key in _MODEL_KEYS if key in a), None) if keeps else None
    name = a["gen_ai.tool.name"] if obs_type == "tool" and "gen_ai.tool.name" in a else span.name
    inp = a.get(
        "langfuse.observation.input",
        a.get("gen_ai.input.messages", a.get("gen_ai.tool.call.arguments")),
    )
    out = a.get(
        "langfuse.observation.output",
        a.get("gen_ai.output.messages", a.get("gen_ai.tool.call.result")),
    )
    return Observation(
        id=span.span_id,
        parent_id=span.parent_span_id or None,
        type=obs_type,
        name=name,
        level=level,
        status_message=a.get("langfuse.observation.status_message") or span.status_message or None,
        model=model,
        usage=_usage(a) if keeps else {},
        cost=_cost(a) if keeps else {},
        completion_start_time=(
            a.get("langfuse.observation.completion_start_time") if keeps else None
        ),
        input=inp,
        output=out,
        metadata=_metadata(a, "langfuse.observation.metadata"),
        trace_name=a.get("langfuse.trace.name"),
        trace_tags=tuple(a.get("langfuse.trace.tags", ())),
    )


def _environment(a: dict[str, Any], resource: dict[str, Any]) -> str | None:
    for source in (a, resource):
        for key in (
            "langfuse.environment",
            "deployment.environment.name",
            "deployment.environment",
        ):
            if key in source:
                env = str(source[key]).lower()
                ok = re.fullmatch(r"[a-z0-9_-]{1,40}", env)
                return env if ok else "default"
    return None


def to_trace(spans: list[ReceivedSpan]) -> Trace:
    """Build the trace record the way Langfuse would (root first, then child updates)."""
    trace = Trace()
    roots = [s for s in spans if not s.parent_span_id]
    children = [s for s in spans if s.parent_span_id]
    for span in roots:
        a = span.attributes
        trace.name = a.get("langfuse.trace.name", span.name)
        trace.user_id = a.get("langfuse.user.id", a.get("user.id"))
        trace.session_id = a.get(
            "langfuse.session.id", a.get("session.id", a.get("gen_ai.conversation.id"))
        )
        trace.tags = tuple(a.get("langfuse.trace.tags", ()))
        trace.metadata.update(_metadata(a, "langfuse.trace.metadata"))
        trace.release = a.get("langfuse.release", span.resource.get("langfuse.release"))
        trace.input = a.get("langfuse.trace.input", a.get("langfuse.observation.input"))
        trace.output = a.get("langfuse.trace.output", a.get("langfuse.observation.output"))
    first = min(spans, key=lambda s: s.end_ns) if spans else None
    if first is not None:
        trace.environment = _environment(first.attributes, first.resource) or "default"
    for span in children:
        a = span.attributes
        # On a child only langfuse.session.id / session.id update the trace's session.
        session = a.get("langfuse.session.id", a.get("session.id"))
        if session is not None:
            trace.session_id = session
        if "langfuse.user.id" in a or "user.id" in a:
            trace.user_id = a.get("langfuse.user.id", a.get("user.id"))
        trace.metadata.update(_metadata(a, "langfuse.trace.metadata"))
        # A child's trace attributes update the trace (a lost root leaves it named).
        if trace.name is None and "langfuse.trace.name" in a:
            trace.name = a["langfuse.trace.name"]
        if not trace.tags and "langfuse.trace.tags" in a:
            trace.tags = tuple(a["langfuse.trace.tags"])
        if trace.input is None and "langfuse.trace.input" in a:
            trace.input = a["langfuse.trace.input"]
        if trace.output is None and "langfuse.trace.output" in a:
            trace.output = a["langfuse.trace.output"]
        if any(key.startswith("langfuse.trace.") for key in a) or session is not None:
            # A child trace update overwrites release with null (set release on the resource).
            trace.release = span.resource.get("langfuse.release")
    return trace
