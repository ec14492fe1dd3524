"""Record every span, export only the sampled sessions.

The SDK's `AlwaysRecordSampler` (opentelemetry-sdk 1.45) turns DROP into RECORD_ONLY but keeps
the dropped result's attributes, and the built-in samplers return *no* attributes on DROP: a
sampled-out span then reaches processors with its creation-time attributes gone (checked in the
SDK source: `StaticSampler`/`TraceIdRatioBased` set `attributes = None` on DROP, and the tracer
only applies `sampling_result.attributes`). We pass all attributes at creation, so the usage
ledger would see generations without usage. This sampler keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class RecordAllSampler(Sampler):
    """Like `AlwaysRecordSampler(root)`, but a DROP becomes RECORD_ONLY *with* the span's
    attributes, so processors (usage ledger, metrics, error keeping) see complete spans."""

    def __init__(self, root: Sampler) -> None:
        if root is None:
            raise ValueError("root sampler is required")
        self._root = root

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not Decision.DROP:
            return result
        merged = {**(attributes or {}), **result.attributes}
        return SamplingResult(Decision.RECORD_ONLY, merged, result.trace_state)

    def get_description(self) -> str:
        return f"RecordAllSampler{{{self._root.get_description()}}}"
