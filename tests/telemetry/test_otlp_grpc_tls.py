"""gRPC transport security reaches the wire as the plan says: against a real TLS-only OTLP/gRPC
receiver, `https://` and a scheme-less `host:port` export over TLS (trusting the CA named by
`OTEL_EXPORTER_OTLP_CERTIFICATE`, read by the SDK exporter), and `OTEL_EXPORTER_OTLP_INSECURE=true`
really sends plaintext, which that receiver cannot accept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from voicetrace.emulator.tls import write_certificates
from voicetrace.telemetry import PriceTable, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry.setup import configure_telemetry

from tests.otlp_grpc_receiver import GrpcOtlpReceiver
from tests.telemetry.conftest import session_info


@pytest.fixture
def tls_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GrpcOtlpReceiver]:
    files = write_certificates(tmp_path)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(files.ca_path))
    tls = (files.cert_path.read_bytes(), files.key_path.read_bytes())
    with GrpcOtlpReceiver(tls=tls) as rx:
        yield rx


def _export_one_session(env: dict[str, str]) -> VoiceTelemetry:
    tel = configure_telemetry(
        "voicetrace-tls",
        env={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_METRICS_EXPORTER": "none", **env},
        pricing=PriceTable.load(None),
        usage_wait_s=0.1,
        schedule_delay_ms=50,
        export_timeout_s=1.0,
    )
    trace = tel.start_session(session_info())
    trace.user_text("hello")
    trace.model_audio(4800)
    trace.usage(UsageSnapshot(prompt=10, response=5))
    trace.turn_complete()
    trace.end()
    tel.force_flush(3.0)
    return tel


@pytest.mark.parametrize("endpoint", ["https://localhost:{port}", "localhost:{port}"])
def test_tls_endpoints_export_to_a_tls_receiver(tls_receiver: GrpcOtlpReceiver, endpoint: str):
    tel = _export_one_session(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint.format(port=tls_receiver.port)}
    )
    try:
        assert len(tls_receiver.wait_for_spans(3)) == 3
        assert tel.health()["spans_exported"] == 3
    finally:
        tel.shutdown(1.0)


def test_insecure_true_sends_plaintext_which_a_tls_receiver_cannot_take(
    tls_receiver: GrpcOtlpReceiver,
):
    tel = _export_one_session(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"localhost:{tls_receiver.port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
    )
    try:
        health = tel.health()
        assert tls_receiver.spans == []
        assert health["spans_exported"] == 0 and health["export_failures"] >= 1, health
    finally:
        tel.shutdown(1.0)
