"""Span metrics the way the collector's `span_metrics` connector makes them, for Prometheus.

No collector binary runs here, so the spans the service really exported (received by
`OtlpReceiver`) are turned into the connector's two metrics and served on a local `/metrics`
that Prometheus scrapes, named as the collector's `prometheus` exporter names them:

- `{namespace}.calls` (monotonic sum) → `traces_span_metrics_calls_total`;
- `{namespace}.duration` (histogram, `histogram.unit`, `histogram.explicit.buckets`) →
  `traces_span_metrics_duration_seconds_{bucket,sum,count}`;
- one series per `service.name` (resource), `span.name`, `span.kind` (`SPAN_KIND_…`),
  `status.code` (`STATUS_CODE_…`) and each configured dimension the span (or its resource) has —
  a dimension a span lacks is left out, as the connector does without a `default`;
- label names with `.` → `_` (`gen_ai.request.model` → `gen_ai_request_model`).

The connector's config is read from otel-collector.yaml, so a dashboard query that names a
dimension the collector does not produce comes back empty.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, MetricsHandler
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from tests.deploy.promnames import label_name
from tests.otlp_receiver import OtlpReceiver

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUSES = ("UNSET", "OK", "ERROR")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


def seconds(duration: str) -> float:
    """A collector duration (`50ms`, `1s`, `1500ms`, `1m`) in seconds."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"unsupported duration {duration!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


@dataclass
class _Series:
    count: int = 0
    total_s: float = 0.0
    buckets: list[int] | None = None


class SpanMetrics:
    """The connector's series over every span `receiver` holds, recomputed on each scrape."""

    def __init__(self, receiver: OtlpReceiver, connector: dict[str, Any]) -> None:
        self.receiver = receiver
        self.namespace = label_name(connector["namespace"])  # traces.span.metrics → traces_…
        self.dimensions = [d["name"] for d in connector.get("dimensions", [])]
        assert connector["histogram"]["unit"] == "s", "only second histograms are ported"
        self.bounds = [seconds(b) for b in connector["histogram"]["explicit"]["buckets"]]

    def _labels(self, span: Any) -> tuple[tuple[str, str], ...]:
        labels = {
            "service_name": str(span.resource.get("service.name", "")),
            "span_name": span.name,
            "span_kind": f"SPAN_KIND_{_KINDS[span.kind]}",
            "status_code": f"STATUS_CODE_{_STATUSES[span.status_code]}",
        }
        for dim in self.dimensions:
            value = span.attributes.get(dim, span.resource.get(dim))
            if value is not None:
                labels[label_name(dim)] = str(value)
        return tuple(sorted(labels.items()))

    def collect(self) -> Iterator[Metric]:
        series: dict[tuple[tuple[str, str], ...], _Series] = defaultdict(_Series)
        for span in self.receiver.spans:
            entry = series[self._labels(span)]
            duration = max(span.end_ns - span.start_ns, 0) / 1e9
            entry.count += 1
            entry.total_s += duration
            if entry.buckets is None:
                entry.buckets = [0] * (len(self.bounds) + 1)
            index = next((i for i, b in enumerate(self.bounds) if duration <= b), len(self.bounds))
            entry.buckets[index] += 1
        names = sorted({k for labels in series for k, _ in labels})
        calls = CounterMetricFamily(f"{self.namespace}_calls", "span calls", labels=names)
        histogram = HistogramMetricFamily(
            f"{self.namespace}_duration_seconds", "span duration", labels=names
        )
        for labels, entry in series.items():
            values = [dict(labels).get(n, "") for n in names]
            calls.add_metric(values, entry.count)
            cumulative, running = [], 0
            for bound, n in zip([*self.bounds, float("inf")], entry.buckets or [], strict=True):
                running += n
                cumulative.append((_le(bound), running))
            histogram.add_metric(values, cumulative, entry.total_s)
        yield calls
        yield histogram


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class SpanMetricsEndpoint:
    """`SpanMetrics` served on http://127.0.0.1:port/metrics from a thread."""

    def __init__(self, metrics: SpanMetrics) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)
        handler = MetricsHandler.factory(registry)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SpanMetricsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
