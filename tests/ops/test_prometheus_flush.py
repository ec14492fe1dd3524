"""Flushing the telemetry never duplicates series in the next Prometheus scrape.

With opentelemetry-exporter-prometheus 0.66b2, flushing a meter provider makes the pull reader
queue one more snapshot, and the next /metrics render writes every series once per queued
snapshot: duplicate samples, which Prometheus drops (keeping the first, possibly older, value).
`VoiceTelemetry.force_flush()` (at every session end) therefore flushes push readers only.
"""

from __future__ import annotations

from voicetrace.telemetry import SessionInfo
from voicetrace.telemetry.setup import configure_telemetry


def test_a_telemetry_flush_does_not_duplicate_series_in_the_next_scrape(monkeypatch):
    from prometheus_client import REGISTRY, generate_latest

    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    telemetry = configure_telemetry()
    try:
        session = telemetry.start_session(
            SessionInfo(session_id="s-flush", user_id="u", model="gemini-3.8-live")
        )
        session.end("completed")
        assert telemetry.force_flush(5.0)
        text = generate_latest(REGISTRY).decode()
        series = [line.split(" ")[0] for line in text.splitlines() if line.startswith("voice_")]
        assert series
        assert len(series) == len(set(series)), "a series is rendered more than once"
    finally:
        telemetry.shutdown(2.0)
