"""The Grafana dashboard queries only metrics and labels that actually exist.

The catalogue of what exists is built, not typed in: the service's metrics come from a real
`VoiceTelemetry` session recorded through the OTel SDK (names, units, kinds, attributes), turned
into Prometheus names the way the collector's exporter does (cross-checked against the Python
Prometheus exporter); span-metric names and labels come from otel-collector.yaml plus the spans of
the same session; the collector's own `otelcol_exporter_*` names from its metadata.yaml.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest
from voicetrace.telemetry import (
    ModalityTokens,
    PriceTable,
    SessionInfo,
    UsageSnapshot,
    VoiceTelemetry,
)

from tests.deploy.conftest import DEPLOY, SCHEMAS, load_yaml
from tests.deploy.promnames import label_name, parse_query, prom_name, series_names

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "voicetrace.json"
# Added by Prometheus / the exporter to every series; `le` to histogram buckets.
COMMON_LABELS = {"job", "instance"}
# span_metrics' built-in dimensions (connector README), before the configured ones.
SPAN_METRICS_LABELS = {"service.name", "span.name", "span.kind", "status.code"}
STATUS_CODES = {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"}


@dataclass
class Catalogue:
    """Prometheus series name → label names, and label name → values seen (when known)."""

    labels: dict[str, set[str]] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, names: set[str], labels: set[str]) -> None:
        for name in names:
            extra = {"le"} if name.endswith("_bucket") else set()
            self.labels.setdefault(name, set()).update(labels | COMMON_LABELS | extra)


def _kind(data: Any) -> str:
    if isinstance(data, Histogram):
        return "histogram"
    if isinstance(data, Sum) and data.is_monotonic:
        return "counter"
    assert isinstance(data, Sum | Gauge), data
    return "gauge"


def _metrics(data: MetricsData | None) -> Iterator[tuple[Any, Any]]:
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                yield metric, metric.data


def _voice_session(tel: VoiceTelemetry) -> None:
    """Two turns touching every instrument: speech, tools (ok and failing), barge-in, audio
    usage, client playback marks."""
    s = tel.start_session(
        SessionInfo(session_id="sess-dash", user_id="alice", model="gemini-3.8-live")
    )
    s.user_audio(0.6, voiced=True)
    s.tool_call("c1", "search_nearby", {"q": "coffee"})
    s.tool_result("c1", {"places": []})
    s.tool_call("c2", "get_directions", {})
    s.tool_result("c2", {}, error="no route")
    s.model_audio(48000)
    s.usage(
        UsageSnapshot(
            prompt=300,
            response=120,
            prompt_details=(ModalityTokens("AUDIO", 250), ModalityTokens("TEXT", 50)),
            response_details=(ModalityTokens("AUDIO", 120),),
        )
    )
    turn = s.current_turn
    s.turn_complete()
    if turn is not None:
        s.playback(turn, "started", 0.0)
        s.playback(turn, "stopped", 500.0)
    s.user_audio(0.4, voiced=True)
    s.model_audio(24000)
    s.interrupted()
    s.usage(UsageSnapshot(prompt=500, response=40))
    s.turn_complete()
    s.end("completed")


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[tuple[Any, Any]], list[ReadableSpan], str]]:
    """One real session: (OTLP metrics, spans, Python Prometheus exporter text)."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    memory = InMemoryMetricReader()
    prometheus = PrometheusMetricReader()  # registers in prometheus_client's global REGISTRY
    meter_provider = MeterProvider(metric_readers=[memory, prometheus])
    tel = VoiceTelemetry(
        tracer_provider,
        meter_provider,
        pricing=PriceTable.load(None),
        capture_content=False,
        usage_wait_s=0.1,
        owns_providers=False,
    )
    try:
        _voice_session(tel)
        assert tel.force_flush(5.0)
        metrics = list(_metrics(memory.get_metrics_data()))
        text = generate_latest(REGISTRY).decode()
        yield metrics, list(spans.get_finished_spans()), text
    finally:
        tel.shutdown(2.0)
        meter_provider.shutdown()  # unregisters the Prometheus collector again
        tracer_provider.shutdown()


@pytest.fixture(scope="module")
def catalogue(recorded: tuple[list[tuple[Any, Any]], list[ReadableSpan], str]) -> Catalogue:
    metrics, spans, _ = recorded
    cat = Catalogue()
    # 1. the service's OTLP metrics, as the collector's prometheus exporter names them
    for metric, data in metrics:
        labels: set[str] = set()
        for point in data.data_points:
            for key, value in point.attributes.items():
                labels.add(label_name(key))
                cat.values[label_name(key)].add(str(value))
        cat.add(series_names(metric.name, metric.unit or "", _kind(data)), labels)
    # 2. span_metrics, from the connector's config and this session's spans
    connector = load_yaml(DEPLOY.parent / "otel-collector.yaml")["connectors"]["span_metrics"]
    dims = {d["name"] for d in connector["dimensions"]}
    span_labels = {label_name(a) for a in SPAN_METRICS_LABELS | dims}
    namespace = connector["namespace"]
    cat.add(series_names(f"{namespace}.calls", "", "counter"), span_labels)
    unit = connector["histogram"]["unit"]
    cat.add(series_names(f"{namespace}.duration", unit, "histogram"), span_labels)
    for span in spans:
        cat.values["span_name"].add(span.name)
        for dim in dims:
            if span.attributes and dim in span.attributes:
                cat.values[label_name(dim)].add(str(span.attributes[dim]))
    cat.values["status_code"] |= STATUS_CODES
    # 3. the collector's own exporter metrics (prefix otelcol_, label `exporter`)
    helper = load_yaml(SCHEMAS / "core/exporter/exporterhelper/metadata.yaml")
    for name, spec in helper["telemetry"]["metrics"].items():
        kind = "histogram" if "histogram" in spec else "gauge"
        if "sum" in spec:
            kind = "counter" if spec["sum"].get("monotonic") else "gauge"
        cat.add(series_names(f"otelcol_{name}", spec.get("unit", ""), kind), {"exporter"})
    collector = load_yaml(DEPLOY.parent / "otel-collector.yaml")
    cat.values["exporter"] |= set(collector["exporters"])
    return cat


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_dashboard_is_valid_grafana_json_using_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    provisioned = load_yaml(DEPLOY / "grafana/provisioning/datasources/datasources.yaml")
    prometheus_uid = next(d["uid"] for d in provisioned["datasources"] if d["type"] == "prometheus")
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == prometheus_uid, panel["title"]
        assert panel["targets"], panel["title"]
    assert len(_queries()) >= 10


@pytest.mark.parametrize(("title", "expr"), _queries())
def test_every_query_uses_emitted_metrics_labels_and_values(
    catalogue: Catalogue, title: str, expr: str
) -> None:
    metrics, groupings, matchers = parse_query(expr)
    assert metrics, f"{title}: no metric in {expr!r}"
    unknown = metrics - set(catalogue.labels)
    assert not unknown, f"{title}: nothing emits {sorted(unknown)}"
    available = set().union(*(catalogue.labels[m] for m in metrics))
    assert groupings <= available, f"{title}: no label {sorted(groupings - available)}"
    for metric, label, op, value in matchers:
        assert metric is not None, f"{title}: write selectors as metric{{…}}"
        assert label in catalogue.labels[metric], f"{title}: {metric} has no label {label}"
        known = catalogue.values.get(label)
        if op == "=" and known:
            assert value in known, f"{title}: {label}={value!r} never occurs ({sorted(known)})"


def test_dashboard_covers_latency_turns_and_cost(catalogue: Catalogue) -> None:
    used = set().union(*(parse_query(expr)[0] for _, expr in _queries()))
    assert {
        "voice_turn_phase_duration_seconds_bucket",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "voice_turns_total",
        "voice_cost_USD_total",
        "traces_span_metrics_duration_seconds_bucket",
        "traces_span_metrics_calls_total",
    } <= used


def test_query_check_rejects_unknown_metrics_and_labels(catalogue: Catalogue) -> None:
    """The check above can fail: a typo'd metric or a label the metric lacks is caught."""
    metrics, _, _ = parse_query("sum(rate(voice_turn_total[5m]))")
    assert metrics - set(catalogue.labels) == {"voice_turn_total"}
    _, groupings, _ = parse_query("sum by (user_id) (rate(voice_turns_total[5m]))")
    assert not groupings <= catalogue.labels["voice_turns_total"]


def test_prometheus_naming_matches_a_real_exporter(
    recorded: tuple[list[tuple[Any, Any]], list[ReadableSpan], str],
) -> None:
    """Our port of the collector's naming agrees with opentelemetry-exporter-prometheus on every
    metric the service emits (units like `USD` and `{turn}`, counters, up-down counters)."""
    metrics, _, text = recorded
    rendered = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics
    for metric, data in metrics:
        names = series_names(metric.name, metric.unit or "", _kind(data))
        assert names <= rendered, (metric.name, metric.unit, sorted(names - rendered))
    assert prom_name("voice.cost", "USD", "counter") in rendered
