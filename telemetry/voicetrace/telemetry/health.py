"""Self-monitoring counters of the telemetry layer (shown on `/health`, exported as metrics).

Telemetry fails open, so its failures must be visible somewhere: every swallowed exception,
dropped span and failed export is counted here. Counters are shared by the exporters' worker
threads and the voice path, hence the lock (uncontended, ~100 ns).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

COUNTERS = (
    "spans_started",
    "spans_exported",
    "spans_dropped",
    "export_failures",
    "tracer_errors",
    "turns_emitted",
    "emit_dropped",
    "usage_late",
    "usage_ignored",
    "usage_estimated",
    "usage_after_estimate",
    "kept_error_traces",
    "kept_buffer_evictions",
)


class TelemetryHealth:
    """Thread-safe counters plus live gauges (queue sizes, active sessions)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._gauges: dict[str, Callable[[], int]] = {}
        self.last_error: str | None = None

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def error(self, where: str, exc: BaseException) -> None:
        """Count a contained tracer exception; keep only its type and place (no message: it
        could carry content or secrets)."""
        with self._lock:
            self._counts["tracer_errors"] += 1
            self.last_error = f"{where}: {type(exc).__name__}"

    def gauge(self, name: str, read: Callable[[], int]) -> None:
        self._gauges[name] = read

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        for name, read in list(self._gauges.items()):
            try:
                out[name] = int(read())
            except Exception:  # a gauge must never break /health
                out[name] = -1
        out.setdefault("queue_size", 0)
        out["last_error"] = self.last_error
        return out
