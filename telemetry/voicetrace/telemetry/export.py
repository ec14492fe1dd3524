"""Fail-open, bounded export: counted exporters, a counting batch processor, error keeping.

The OTel SDK's `BatchSpanProcessor` drops silently when full and its `force_flush`/`shutdown`
can block past their timeout argument (an export in flight is waited for). Here every drop and
failure is counted in `TelemetryHealth`, and `run_bounded` puts a hard wall-clock limit on any
SDK call by running it in a daemon thread and giving up on it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode
from voicetrace.telemetry.health import TelemetryHealth

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_bounded(fn: Callable[[], T], timeout_s: float, name: str) -> tuple[bool, T | None]:
    """Run `fn` in a daemon thread; return (finished, result) after at most `timeout_s`.

    A hung exporter keeps its thread, but the caller (shutdown, a flush) is never held longer
    than asked. The thread is a daemon, so it cannot keep the process alive either.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except Exception as exc:  # reported as "not finished cleanly"
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"voicetrace-{name}", daemon=True)
    thread.start()
    thread.join(max(timeout_s, 0.0))
    if thread.is_alive() or "error" in box:
        return False, None
    return True, box.get("result")


class CountingSpanExporter(SpanExporter):
    """Wraps an exporter: counts exported spans, failed batches and dropped spans; never raises."""

    def __init__(self, inner: SpanExporter, health: TelemetryHealth, name: str = "otlp") -> None:
        self.inner, self.health, self.name = inner, health, name

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            log.warning("span export to %s raised %s", self.name, type(exc).__name__)
            result = SpanExportResult.FAILURE
        self.health.export_result(self.name, result is SpanExportResult.SUCCESS)
        if result is SpanExportResult.SUCCESS:
            self.health.add("spans_exported", len(spans))
        else:
            self.health.add("export_failures")
            self.health.add("spans_dropped", len(spans))
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception as exc:
            log.warning("exporter %s shutdown raised %s", self.name, type(exc).__name__)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception:
            return False


class ExportProcessor(BatchSpanProcessor):
    """A `BatchSpanProcessor` with a bounded queue that counts what it drops, and that accepts
    unsampled spans an `ErrorKeepingProcessor` decided to keep."""

    def __init__(
        self,
        exporter: SpanExporter,
        health: TelemetryHealth,
        *,
        max_queue_size: int = 2048,
        schedule_delay_millis: float = 500,
        max_export_batch_size: int = 512,
    ) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=min(max_export_batch_size, max_queue_size),
        )
        self.health = health
        self._max_queue = max_queue_size

    def queue_size(self) -> int:
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        return len(queue) if queue is not None else 0

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.submit(span)

    def submit(self, span: ReadableSpan) -> None:
        """Queue a span for export whatever its sampled flag (kept error traces)."""
        batch = getattr(self, "_batch_processor", None)
        if batch is None:  # a future SDK without the internal batcher: export through the base
            super().on_end(span)
            return
        if getattr(batch, "_shutdown", False) or self.queue_size() >= self._max_queue:
            # The SDK would drop it (queue full: the oldest one) and only log.
            self.health.add("spans_dropped")
        batch.emit(span)


class ErrorKeepingProcessor(SpanProcessor):
    """Keeps sessions that end in error even when the sampler dropped them.

    With `AlwaysRecordSampler` the spans of a sampled-out session are still *recorded*
    (RECORD_ONLY) and reach processors. This one buffers them per trace; when the root span
    ends, the trace is sent to the export processors if any of its spans had ERROR status, and
    forgotten otherwise. Limits (documented): at most `max_traces` sessions and
    `max_spans_per_trace` spans each are buffered (oldest session evicted first, counted); a
    process crash loses the buffer; spans ending after their root are not kept.
    """

    def __init__(
        self,
        targets: Sequence[ExportProcessor],
        health: TelemetryHealth,
        *,
        max_traces: int = 256,
        max_spans_per_trace: int = 2000,
    ) -> None:
        self.targets = tuple(targets)
        self.health = health
        self.max_traces, self.max_spans = max_traces, max_spans_per_trace
        self._lock = threading.Lock()
        self._buffers: OrderedDict[int, tuple[list[ReadableSpan], list[bool]]] = OrderedDict()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None or ctx.trace_flags.sampled:
            return
        is_root = span.parent is None
        errored = span.status is not None and span.status.status_code is StatusCode.ERROR
        with self._lock:
            entry = self._buffers.get(ctx.trace_id)
            if entry is None:
                if is_root and not errored:
                    return  # a lone, healthy root: nothing to keep
                while len(self._buffers) >= self.max_traces:
                    self._buffers.popitem(last=False)
                    self.health.add("kept_buffer_evictions")
                entry = self._buffers[ctx.trace_id] = ([], [False])
            spans, flag = entry
            if len(spans) < self.max_spans:
                spans.append(span)
            else:
                self.health.add("kept_buffer_evictions")
            flag[0] = flag[0] or errored
            if not is_root:
                return
            del self._buffers[ctx.trace_id]
            keep = flag[0]
        if keep:
            self.health.add("kept_error_traces")
            for target in self.targets:
                for s in spans:
                    target.submit(s)

    def buffered_traces(self) -> int:
        with self._lock:
            return len(self._buffers)

    def shutdown(self) -> None:
        with self._lock:
            self._buffers.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
