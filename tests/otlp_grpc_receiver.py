"""A real OTLP/gRPC receiver for tests: a grpcio server on 127.0.0.1:0 serving the collector's
`TraceService/Export` and `MetricsService/Export` (opentelemetry-proto's generated servicers).

Same face as `tests.otlp_receiver.OtlpReceiver` (`requests`, `spans`, `metrics`, `hits`,
`wait_for_*`, `raw()`), decoded with the same functions, so a test can swap the transport and
keep its assertions. Modes, as a collector fails over gRPC:
- `ok`     accept and record;
- `refuse` nothing listens on the port (the client sees UNAVAILABLE);
- `hang`   accept, then hold the call `hang_s` seconds (the client's deadline expires first);
- `500`    answer INTERNAL (not retryable for the SDK exporter, like an HTTP 500 that is final).

With `tls=(cert_pem, key_pem)` it serves TLS only, so a plaintext client is refused.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.otlp_receiver import (
    Mode,
    ReceivedMetric,
    ReceivedRequest,
    ReceivedSpan,
    decode_metrics,
    decode_spans,
)

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class GrpcOtlpReceiver:
    """Context manager: a real OTLP/gRPC endpoint; `endpoint` is where to export."""

    def __init__(
        self, mode: Mode = "ok", hang_s: float = 10.0, tls: tuple[bytes, bytes] | None = None
    ) -> None:
        self.mode: Mode = mode
        self.hang_s = hang_s
        self.tls = tls
        self.requests: list[ReceivedRequest] = []
        self.metrics: list[ReceivedMetric] = []
        self.bodies: list[bytes] = []
        self.hits = 0
        self.port = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._release = threading.Event()
        self._server: grpc.Server | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> GrpcOtlpReceiver:
        if self.mode == "refuse":
            with socket.socket() as s:  # a free port, closed again: connecting is refused
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            return self
        server = grpc.server(ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc"))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), server)
        if self.tls is not None:
            credentials = grpc.ssl_server_credentials([(self.tls[1], self.tls[0])])
            self.port = server.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._release.set()  # let held calls finish
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    @property
    def endpoint(self) -> str:
        """`http://` (plaintext) or `https://` (TLS) plus host:port: a gRPC endpoint has no path."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    base_url = endpoint  # what OtlpReceiver users put in OTEL_EXPORTER_OTLP_ENDPOINT

    # -- handling -------------------------------------------------------------------------------
    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._cond:
            self.hits += 1
            self._cond.notify_all()
        if self.mode == "hang":
            self._release.wait(self.hang_s)
        if self.mode == "500":
            context.abort(grpc.StatusCode.INTERNAL, "boom")

    def export_traces(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        self._enter(context)
        body = request.SerializeToString()
        headers = {key.lower(): str(value) for key, value in context.invocation_metadata()}
        with self._cond:
            self.bodies.append(body + repr(sorted(headers.items())).encode())
            spans = decode_spans(request)
            self.requests.append(ReceivedRequest(TRACE_METHOD, headers, len(body), spans))
            self._cond.notify_all()
        return ExportTraceServiceResponse()

    def export_metrics(
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        self._enter(context)
        with self._cond:
            self.metrics.extend(decode_metrics(request))
            self._cond.notify_all()
        return ExportMetricsServiceResponse()

    # -- assertion helpers (as OtlpReceiver) ----------------------------------------------------
    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return [s for r in self.requests for s in r.spans]

    def raw(self) -> bytes:
        """Every request's bytes and metadata, as a backend would store them."""
        with self._lock:
            return b"".join(self.bodies)

    def wait_for_spans(self, n: int, timeout_s: float = 5.0) -> list[ReceivedSpan]:
        self._wait(lambda: sum(len(r.spans) for r in self.requests) >= n, timeout_s)
        return self.spans

    def wait_for_metrics(self, name: str, timeout_s: float = 5.0) -> list[ReceivedMetric]:
        self._wait(lambda: any(m.name == name for m in self.metrics), timeout_s)
        with self._lock:
            return list(self.metrics)

    def wait_for_hits(self, n: int, timeout_s: float = 5.0) -> int:
        self._wait(lambda: self.hits >= n, timeout_s)
        return self.hits

    def _wait(self, done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: GrpcOtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        return self.receiver.export_traces(request, context)


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: GrpcOtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        return self.receiver.export_metrics(request, context)
