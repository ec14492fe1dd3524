"""Direct export to Langfuse against a local server that enforces Langfuse's OTLP route rules."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from voicetrace.telemetry import PriceTable, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry.langfuse_export import LangfuseSpanExporter, langfuse_headers
from voicetrace.telemetry.setup import configure_telemetry

from tests.langfuse_server import OTEL_PATH, LangfuseServer
from tests.otlp_receiver import OtlpReceiver
from tests.telemetry.conftest import session_info


@pytest.fixture
def made() -> Iterator[list[VoiceTelemetry]]:
    tels: list[VoiceTelemetry] = []
    yield tels
    for tel in tels:
        tel.shutdown(1.0)


def _session(tel: VoiceTelemetry) -> None:
    s = tel.start_session(session_info())
    s.user_text("hello")
    s.model_audio(4800)
    s.usage(UsageSnapshot(prompt=100, response=20))
    s.turn_complete()
    s.end()


def _spans() -> list[Any]:
    """Three real SDK spans to export by hand."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
        pass
    with tracer.start_as_current_span("other"):
        pass
    return list(memory.get_finished_spans())


def test_langfuse_accepts_the_session_export_and_gets_only_its_own_headers(
    made: list[VoiceTelemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A collector token in the standard env var must not travel to Langfuse.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-token=collector-secret")
    with LangfuseServer("pk-lf-1", "sk-lf-2") as lf:
        tel = configure_telemetry(
            "voicetrace-test",
            env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", **lf.env()},
            pricing=PriceTable.load(None),
            usage_wait_s=0.1,
            export_timeout_s=2.0,
            schedule_delay_ms=50,
        )
        made.append(tel)
        _session(tel)
        assert tel.force_flush(3.0)
        assert lf.wait("spans", 3) == 3
    assert lf.violations == []
    (request,) = lf.of(OTEL_PATH)
    assert request.status == 200
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["x-langfuse-ingestion-version"] == "4"
    assert (
        request.headers["authorization"] == "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-2").decode()
    )
    assert "x-collector-token" not in request.headers
    assert b"collector-secret" not in request.body
    assert tel.health()["spans_exported"] == 3 and tel.health()["export_failures"] == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"], ids=str)
def test_langfuse_answers_400_to_a_missing_or_wrong_content_type(content_type: str | None) -> None:
    """The server side of the rule the exporter must meet: the same body and headers, with a
    missing or wrong Content-Type, is refused (Langfuse: 400 "Invalid content type")."""
    with LangfuseServer() as lf:
        headers = langfuse_headers(lf.public_key, lf.secret_key)
        del headers["Content-Type"]
        if content_type is not None:
            headers["Content-Type"] = content_type
        body = gzip.compress(encode_spans(_spans()).SerializeToString())
        session = requests.Session()
        # requests adds no Content-Type for bytes bodies: what is sent is exactly `headers`.
        response = session.post(lf.base_url + OTEL_PATH, data=body, headers=headers, timeout=5)
        assert response.status_code == 400
        assert response.json() == {"error": "Invalid content type"}
        assert lf.spans == [] and len(lf.violations) == 1
        assert "invalid content type" in lf.violations[0]
        # …and with the right one the same bytes are accepted.
        headers["Content-Type"] = "application/x-protobuf"
        ok = session.post(lf.base_url + OTEL_PATH, data=body, headers=headers, timeout=5)
        assert ok.status_code == 200 and len(lf.spans) == 3


def test_our_exporter_retries_429_and_5xx_with_backoff_then_succeeds() -> None:
    with LangfuseServer() as lf:
        lf.script[OTEL_PATH] = [429, 503, 500, 502]
        exporter = LangfuseSpanExporter(
            lf.public_key, lf.secret_key, lf.base_url, timeout_s=5.0, backoff_s=0.02
        )
        assert exporter.export(_spans()) is SpanExportResult.SUCCESS
        statuses = [r.status for r in lf.of(OTEL_PATH)]
        exporter.shutdown()
    assert statuses == [429, 503, 500, 502, 200]
    assert len(lf.spans) == 3 and lf.violations == []


@pytest.mark.parametrize("status", [400, 403, 413])
def test_a_client_error_is_final_and_not_retried(status: int) -> None:
    with LangfuseServer() as lf:
        lf.script[OTEL_PATH] = [status]
        exporter = LangfuseSpanExporter(lf.public_key, lf.secret_key, lf.base_url, backoff_s=0.01)
        assert exporter.export(_spans()) is SpanExportResult.FAILURE
        assert [r.status for r in lf.of(OTEL_PATH)] == [status]
        exporter.shutdown()


def test_wrong_keys_are_refused_with_401_and_counted_as_dropped(
    made: list[VoiceTelemetry],
) -> None:
    with LangfuseServer("pk-lf-right", "sk-lf-right") as lf:
        env = {
            **lf.env(),
            "LANGFUSE_SECRET_KEY": "sk-lf-wrong",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "VOICETRACE_LANGFUSE_SCORES": "false",  # spans only here
        }
        tel = configure_telemetry(
            "voicetrace-test", env=env, pricing=PriceTable.load(None), schedule_delay_ms=50
        )
        made.append(tel)
        _session(tel)
        tel.force_flush(3.0)
        assert lf.wait("requests", 1) == 1
    assert [r.status for r in lf.requests] == [401]
    assert lf.violations == ["/api/public/otel/v1/traces: bad or missing Basic auth"]
    health = tel.health()
    assert health["export_failures"] == 1 and health["spans_dropped"] == 3


def test_retries_stop_at_the_export_timeout() -> None:
    with LangfuseServer() as lf:
        lf.script[OTEL_PATH] = [503] * 50
        exporter = LangfuseSpanExporter(
            lf.public_key, lf.secret_key, lf.base_url, timeout_s=0.5, backoff_s=0.1, max_attempts=50
        )
        assert exporter.export(_spans()) is SpanExportResult.FAILURE
        exporter.shutdown()
    # 0.1 + 0.2 (±20 %) fit in 0.5 s; the next wait (0.4) would not: 2 or 3 attempts.
    assert 2 <= len(lf.of(OTEL_PATH)) <= 3


def test_the_sdk_exporter_copies_env_headers_to_every_endpoint_which_is_why_langfuse_has_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pins opentelemetry-exporter-otlp-proto-http 1.45: `OTEL_EXPORTER_OTLP_HEADERS` is merged
    into headers given to the constructor. If this ever stops, the SDK exporter could be used."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-token=collector-secret")
    with OtlpReceiver("ok") as rx:
        exporter = OTLPSpanExporter(endpoint=rx.traces_url, headers={"authorization": "Basic x"})
        assert exporter.export(_spans()) is SpanExportResult.SUCCESS
        exporter.shutdown()
    assert rx.requests[0].headers["x-collector-token"] == "collector-secret"
