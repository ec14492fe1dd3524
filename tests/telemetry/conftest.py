"""Fixtures for the telemetry tests: the real OTel SDK with in-memory span and metric readers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from voicetrace.telemetry import PriceTable, SessionInfo, VoiceTelemetry

MODEL = "gemini-3.8-live"


def session_info(**overrides: Any) -> SessionInfo:
    base: dict[str, Any] = {"session_id": "sess-1", "user_id": "alice", "model": MODEL}
    base.update(overrides)
    return SessionInfo(**base)


@dataclass
class Traced:
    """A `VoiceTelemetry` over real SDK providers whose output is kept in memory.

    Spans and metrics are built on the telemetry's emitter thread, so every read goes through
    `force_flush()` first — the documented contract for reading what was traced."""

    tel: VoiceTelemetry
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        assert self.tel.force_flush(2.0), "telemetry did not flush within 2 s"
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def one(self, prefix: str) -> ReadableSpan:
        found = self.named(prefix)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def metrics(self) -> dict[str, Any]:
        """metric name → list of data points (all scopes)."""
        assert self.tel.force_flush(2.0), "telemetry did not flush within 2 s"
        data = self.reader.get_metrics_data()
        out: dict[str, Any] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out


def make_traced(**options: Any) -> Traced:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    options.setdefault("pricing", PriceTable.load(None))
    options.setdefault("capture_content", False)
    options.setdefault("usage_wait_s", 0.2)
    tel = VoiceTelemetry(tracer_provider, meter_provider, owns_providers=True, **options)
    return Traced(tel, exporter, reader)


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = make_traced()
    yield t
    t.tel.shutdown(2.0)


@pytest.fixture
def traced_factory() -> Iterator[Any]:
    made: list[Traced] = []

    def factory(**options: Any) -> Traced:
        t = make_traced(**options)
        made.append(t)
        return t

    yield factory
    for t in made:
        t.tel.shutdown(2.0)
