"""`VoiceTelemetry`: the entry point a voice app holds for its lifetime.

It owns no global state: tracer and meter providers are passed in (or the global ones are
used), and everything it creates hangs off the instance — including the one emitter thread that
builds spans and records metrics off the caller's thread (telemetry.emitter). Its public methods
never raise into the voice path, and `force_flush`/`shutdown` are bounded in wall time even when
an exporter hangs (they are synchronous; an asyncio app calls them through `asyncio.to_thread`).
Spans exist once `force_flush()` returned: it drains the emitter first, then the SDK.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import INVALID_SPAN, SpanKind, TracerProvider
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.content import Redactor, capture_from_env
from voicetrace.telemetry.emitter import Emitter
from voicetrace.telemetry.export import run_bounded
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.media import AudioCapture, MediaUploader
from voicetrace.telemetry.metrics import VoiceMetrics
from voicetrace.telemetry.prices import PriceTable
from voicetrace.telemetry.records import SessionInfo, SessionSummary, TurnSettled
from voicetrace.telemetry.recovery import RootContext, lost_root_span
from voicetrace.telemetry.session import SessionTrace
from voicetrace.telemetry.spans import SpanFactory
from voicetrace.telemetry.writer import SessionWriter

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


class VoiceTelemetry:
    """Traces voice sessions as OTel spans (GenAI semconv + Langfuse mapping) and metrics."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        pricing: PriceTable | None = None,
        capture_content: bool | None = None,
        usage_wait_s: float = 2.0,
        max_content_chars: int = 4000,
        health: TelemetryHealth | None = None,
        owns_providers: bool = False,
        on_shutdown: Callable[[], None] | None = None,
        max_emit_queue: int = 4096,
        media: MediaUploader | None = None,
        flush_metrics: bool = True,
        recovery_processors: Sequence[SpanProcessor] = (),
    ) -> None:
        if usage_wait_s < 0:
            raise ValueError("usage_wait_s must be >= 0")
        if max_content_chars < 16:
            raise ValueError("max_content_chars must be at least 16")
        self.tracer_provider = tracer_provider or otel_trace.get_tracer_provider()
        self.meter_provider = meter_provider or otel_metrics.get_meter_provider()
        self.tracer = self.tracer_provider.get_tracer("voicetrace.telemetry", "0.1.0")
        self.pricing = pricing
        self.capture_content = capture_from_env() if capture_content is None else capture_content
        self.usage_wait_s = float(usage_wait_s)
        self.max_content_chars = int(max_content_chars)
        self.counters = health or TelemetryHealth()
        self.metrics = VoiceMetrics(self.meter_provider, self.counters)
        self._owns_providers = owns_providers
        self._flush_metrics = flush_metrics
        # Where a rebuilt root of a crashed session goes (configure_telemetry passes the
        # provider's own processors: the exporters and any extra ones).
        self._recovery_processors = tuple(recovery_processors)
        # Turn audio as Langfuse media: only for sessions with content capture and consent.
        self.media = media
        self._on_shutdown = on_shutdown
        self._sessions: weakref.WeakSet[SessionTrace] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        # Jobs queued beyond `max_emit_queue` are dropped and counted (emit_dropped).
        self._emitter = emitter = Emitter(self.counters, max_emit_queue)
        # No reference back to self: an instance dropped without shutdown() stops its thread.
        weakref.finalize(self, emitter.close)
        # Weakly bound, like the emitter: a dropped instance is not kept alive by its flusher.
        self._flusher = _Flusher(weakref.WeakMethod(self.force_flush))
        weakref.finalize(self, self._flusher.close)
        sessions = self._sessions
        self.counters.gauge("sessions_active", lambda: len(sessions))
        self.counters.gauge("emit_queue_size", emitter.queue_size)

    def prepare_model(self, model: str, provider: str = "gcp.gemini") -> None:
        """Create a model's metric series now (counters at 0), so Prometheus' `rate()` sees
        even the first session's first events."""
        try:
            self.metrics.for_model(provider, model)
        except Exception as exc:
            self.counters.error("prepare_model", exc)

    # -- sessions -----------------------------------------------------------------------------
    def start_session(
        self, info: SessionInfo, *, on_turn_settled: TurnSettled | None = None
    ) -> SessionTrace:
        """Open the root `voice_session` span (the sampling decision is made here, once per
        session). `on_turn_settled` gets each turn's final `TurnSummary` once its usage is
        settled (see `records.TurnSettled`). Never raises for tracing reasons; bad `info` is a
        caller bug and does."""
        if not isinstance(info, SessionInfo):
            raise TypeError("start_session() takes a SessionInfo")
        consent = self.capture_content and info.recording_consent
        redactor = Redactor(info.secrets_blurred, self.max_content_chars) if consent else None
        factory = SpanFactory(self.tracer, info, self.counters, self.pricing, redactor)
        capture = None
        if redactor is not None and self.media is not None:
            capture = AudioCapture(self.counters)
            factory.media = (capture, self.media)
        # The root stays a live span started here, once per session: the sampling decision is
        # made on it and its context is the parent every later span needs.
        root: Any = INVALID_SPAN
        try:
            root = self.tracer.start_span(
                k.SPAN_SESSION,
                kind=SpanKind.INTERNAL,
                attributes=factory.root_attributes(),
                context=None,
            )
            self.counters.add("spans_started")
        except Exception as exc:
            self.counters.error("start_session", exc)
        writer = SessionWriter(
            factory,
            self.metrics.for_model(info.provider, info.model),
            self.metrics.sessions,
            self.counters,
            root,
        )
        session = SessionTrace(
            info,
            writer,
            emitter=self._emitter,
            counters=self.counters,
            content=redactor is not None,
            usage_wait_s=self.usage_wait_s,
            on_end=self._session_ended,
            on_turn_settled=on_turn_settled,
            audio_capture=capture,
        )
        with self._lock:
            self._sessions.add(session)
        try:
            self.metrics.sessions.add(1, {k.PROVIDER_NAME: info.provider})
        except Exception as exc:
            self.counters.error("start_session", exc)
        return session

    def close_lost_session(
        self, info: SessionInfo, root: RootContext, summary: SessionSummary
    ) -> bool:
        """Export the root span of a session whose process died (see `telemetry.recovery`);
        True if it went to the processors. Never raises; a sampled-out root is not exported."""
        if not root.sampled or not self._recovery_processors:
            return False
        try:
            resource = getattr(self.tracer_provider, "resource", None) or Resource.get_empty()
            span = lost_root_span(info, root, summary, time.time_ns(), resource, self.counters)
            for processor in self._recovery_processors:
                processor.on_end(span)
            self.counters.add("roots_recovered")
            return True
        except Exception as exc:
            self.counters.error("close_lost_session", exc)
            return False

    def _session_ended(self, session: SessionTrace) -> None:
        with self._lock:
            self._sessions.discard(session)

    # -- health and lifecycle -------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """JSON-able self-monitoring counters (shown on `/health`)."""
        try:
            snap = self.counters.snapshot()
        except Exception:
            return {"error": "telemetry health unavailable"}
        snap["capture_content"] = self.capture_content
        return snap

    def flush_soon(self, timeout_s: float = 5.0) -> None:
        """Ask for a `force_flush` on the telemetry's own flusher thread and return at once.

        For an asyncio app at the end of a session: it never occupies the app's thread pool
        (which the voice path needs, e.g. for DNS and TLS), and requests made while a flush
        runs are coalesced into one more flush."""
        try:
            self._flusher.request(timeout_s)
        except Exception as exc:
            self.counters.error("flush_soon", exc)

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Build what the emitter holds, then export what is queued; True if all of it was
        done within `timeout_s` of wall time (the whole call never takes longer)."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        drained = self._emitter.drain(timeout_s)
        flush = getattr(self.tracer_provider, "force_flush", None)
        if flush is None:
            return drained
        left = max(deadline - time.monotonic(), 0.0)
        done, ok = run_bounded(lambda: flush(int(left * 1000)), left, "flush")
        meter_flush = getattr(self.meter_provider, "force_flush", None)
        left = max(deadline - time.monotonic(), 0.0)
        if meter_flush is not None and self._owns_providers and self._flush_metrics and left > 0:
            run_bounded(lambda: meter_flush(int(left * 1000)), min(left, 1.0), "mflush")
        return bool(drained and done and ok is not False)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """End sessions still open (server_shutdown), stop the reaper, flush and shut down the
        providers this instance owns — all within `timeout_s` of wall time."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sessions = list(self._sessions)
        for session in sessions:
            session.end("server_shutdown")
        # Build every queued span (bounded), so the providers below export them.
        if not self._emitter.stop(max(deadline - time.monotonic(), 0.0)):
            log.warning("telemetry shutdown left spans unbuilt after %.1f s", timeout_s)
        if self._owns_providers:
            for provider in (self.tracer_provider, self.meter_provider):
                stop = getattr(provider, "shutdown", None)
                left = deadline - time.monotonic()
                if stop is not None and left > 0:
                    done, _ = run_bounded(stop, left, "shutdown")
                    if not done:
                        log.warning("telemetry shutdown gave up after %.1f s", timeout_s)
        else:
            self.force_flush(max(deadline - time.monotonic(), 0.0))
        self._flusher.close()
        if self.media is not None:
            self.media.close(max(deadline - time.monotonic(), 0.1))
        if self._on_shutdown is not None:
            self._on_shutdown()


class _Flusher:
    """One daemon thread that runs coalesced flush requests (see `VoiceTelemetry.flush_soon`)."""

    def __init__(self, flush: weakref.WeakMethod[Callable[[float], bool]]) -> None:
        self._flush = flush
        self._wake = threading.Condition()
        self._timeout_s: float | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, timeout_s: float) -> None:
        with self._wake:
            if self._closed:
                return
            self._timeout_s = max(timeout_s, self._timeout_s or 0.0)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="voicetrace-flush", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._timeout_s is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                timeout_s, self._timeout_s = self._timeout_s, None
            flush = self._flush()
            if flush is None:
                return
            try:
                flush(timeout_s or 0.0)
            except Exception:
                log.exception("background flush failed")
