"""A real OTLP/HTTP trace receiver for tests: a tiny HTTP server on 127.0.0.1:0 in a thread.

It decodes `ExportTraceServiceRequest` protobuf bodies (gzip or plain) with opentelemetry-proto
and records each request's headers and spans; a POST to `/v1/metrics` is decoded as an
`ExportMetricsServiceRequest` instead (its metrics in `metrics`). Modes simulate a backend's
failures:
- `ok`     200 and record;
- `refuse` nothing listens on the port (connection refused);
- `hang`   accept, then sleep `hang_s` (10 s by default) before answering;
- `500`    answer 500 Internal Server Error.

    with OtlpReceiver(mode="ok") as rx:
        exporter = OTLPSpanExporter(endpoint=rx.traces_url)
        ...
        rx.wait_for_spans(3)
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

Mode = Literal["ok", "refuse", "hang", "500"]


def any_value(v: AnyValue) -> Any:
    """Decode an OTLP AnyValue into plain Python (arrays → tuples)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(any_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


@dataclass
class ReceivedSpan:
    """One decoded span with its resource, as a backend would see it."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    status_message: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class ReceivedMetric:
    """One decoded metric (its data points' count) with its resource."""

    name: str
    points: int
    resource: dict[str, Any]


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    raw_size: int
    spans: list[ReceivedSpan]


class OtlpReceiver:
    """Context manager: a real OTLP/HTTP endpoint; `traces_url` is where to export."""

    def __init__(self, mode: Mode = "ok", hang_s: float = 10.0) -> None:
        self.mode: Mode = mode
        self.hang_s = hang_s
        self.requests: list[ReceivedRequest] = []
        self.metrics: list[ReceivedMetric] = []
        self.hits = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> OtlpReceiver:
        if self.mode == "refuse":
            # Reserve a free port, then close it: connecting there is refused.
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return None

            def do_POST(self) -> None:
                receiver._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._release.set()  # let hanging handlers finish
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return f"{self.base_url}/v1/traces"

    # -- handling -------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length)
        with self._cond:
            self.hits += 1
            self._cond.notify_all()
        if self.mode == "hang":
            self._release.wait(self.hang_s)
        if self.mode == "500":
            self._reply(h, 500, b"boom", "text/plain")
            return
        encoding = (h.headers.get("Content-Encoding") or "").lower()
        raw = body
        if encoding == "gzip":
            raw = gzip.decompress(body)
        elif encoding == "deflate":
            raw = zlib.decompress(body)
        if h.path.endswith("/v1/metrics"):
            metrics = ExportMetricsServiceRequest()
            metrics.ParseFromString(raw)
            with self._cond:
                self.metrics.extend(decode_metrics(metrics))
                self._cond.notify_all()
            reply = ExportMetricsServiceResponse().SerializeToString()
            self._reply(h, 200, reply, "application/x-protobuf")
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(raw)
        spans = decode_spans(request)
        headers = {key.lower(): value for key, value in h.headers.items()}
        with self._cond:
            self.requests.append(ReceivedRequest(h.path, headers, len(body), spans))
            self._cond.notify_all()
        self._reply(
            h, 200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"
        )

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:
            pass  # the client gave up (hang mode): nothing to answer

    # -- assertions helpers ---------------------------------------------------------------------
    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return [s for r in self.requests for s in r.spans]

    def wait_for_spans(self, n: int, timeout_s: float = 5.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while sum(len(r.spans) for r in self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return [s for r in self.requests for s in r.spans]

    def wait_for_metrics(self, name: str, timeout_s: float = 5.0) -> list[ReceivedMetric]:
        """The received metrics once one named `name` arrived (or the timeout passed)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(m.name == name for m in self.metrics):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.metrics)

    def wait_for_hits(self, n: int, timeout_s: float = 5.0) -> int:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.hits < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self.hits


def decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """Every span of an OTLP export request, decoded as a backend would see it."""
    return [
        ReceivedSpan(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            kind=span.kind,
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            attributes={kv.key: any_value(kv.value) for kv in span.attributes},
            resource={kv.key: any_value(kv.value) for kv in rs.resource.attributes},
            status_code=span.status.code,
            status_message=span.status.message,
            events=[
                (e.name, {kv.key: any_value(kv.value) for kv in e.attributes}) for e in span.events
            ],
        )
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def decode_metrics(request: ExportMetricsServiceRequest) -> list[ReceivedMetric]:
    """Every metric of an OTLP metrics export request, with its data point count."""
    out: list[ReceivedMetric] = []
    for rm in request.resource_metrics:
        resource = {kv.key: any_value(kv.value) for kv in rm.resource.attributes}
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = len(getattr(metric, kind).data_points) if kind else 0
                out.append(ReceivedMetric(metric.name, points, resource))
    return out
