"""The export path over a real OTLP/HTTP socket: decoding, Langfuse headers, fail-open, bounds."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from voicetrace.telemetry import PriceTable, SessionInfo, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.setup import (
    TelemetryConfigError,
    configure_providers,
    configure_telemetry,
)

from tests.otlp_receiver import OtlpReceiver
from tests.telemetry.conftest import session_info


@pytest.fixture
def made() -> Iterator[list[VoiceTelemetry]]:
    tels: list[VoiceTelemetry] = []
    yield tels
    for tel in tels:
        tel.shutdown(1.0)


def _tel(made: list[VoiceTelemetry], env: dict[str, str], **options: Any) -> VoiceTelemetry:
    options.setdefault("export_timeout_s", 0.5)
    options.setdefault("schedule_delay_ms", 50)
    tel = configure_telemetry(
        "voicetrace-test",
        env={"OTEL_METRICS_EXPORTER": "none", **env},
        pricing=PriceTable.load(None),
        usage_wait_s=0.1,
        **options,
    )
    made.append(tel)
    return tel


def _session(tel: VoiceTelemetry, **info: Any) -> None:
    s = tel.start_session(session_info(**info))
    s.user_text("hello")
    s.model_audio(4800)
    s.usage(UsageSnapshot(prompt=100, response=20))
    s.turn_complete()
    s.end()


def test_spans_reach_a_real_otlp_endpoint_as_protobuf(made) -> None:
    with OtlpReceiver("ok") as rx:
        tel = _tel(
            made,
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url,
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci",
            },
        )
        _session(tel)
        assert tel.force_flush(3.0)
        spans = rx.wait_for_spans(3)
    assert sorted(s.name for s in spans) == [
        "chat gemini-3.8-live",
        "invoke_agent voicetrace",
        "voice_session",
    ]
    assert rx.requests[0].path == "/v1/traces"
    assert spans[0].resource["service.name"] == "voicetrace-test"
    assert spans[0].resource["deployment.environment.name"] == "ci"
    chat = next(s for s in spans if s.name.startswith("chat"))
    assert chat.attributes[k.USAGE_INPUT_TOKENS] == 100
    assert tel.health()["spans_exported"] == 3


def test_langfuse_gets_basic_auth_gzip_and_ingestion_version_only(made, monkeypatch) -> None:
    # A collector token in the standard env var must not travel to Langfuse.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-token=collector-secret")
    with OtlpReceiver("ok") as lf:
        tel = _tel(
            made,
            {
                "OTEL_TRACES_EXPORTER": "none",
                "LANGFUSE_PUBLIC_KEY": "pk-lf-1",
                "LANGFUSE_SECRET_KEY": "sk-lf-2",
                "LANGFUSE_HOST": lf.base_url + "/",
            },
        )
        _session(tel)
        tel.force_flush(3.0)
        lf.wait_for_spans(3)
    request = lf.requests[0]
    assert request.path == "/api/public/otel/v1/traces"
    assert (
        request.headers["authorization"] == "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-2").decode()
    )
    assert request.headers["x-langfuse-ingestion-version"] == "4"
    assert request.headers["content-encoding"] == "gzip"
    assert "x-collector-token" not in request.headers


def test_otlp_and_langfuse_at_once(made) -> None:
    with OtlpReceiver("ok") as rx, OtlpReceiver("ok") as lf:
        tel = _tel(
            made,
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.base_url,
                "LANGFUSE_PUBLIC_KEY": "pk",
                "LANGFUSE_SECRET_KEY": "sk",
                "LANGFUSE_HOST": lf.base_url,
            },
        )
        _session(tel)
        tel.force_flush(3.0)
        assert len(rx.wait_for_spans(3)) == 3
        assert len(lf.wait_for_spans(3)) == 3


@pytest.mark.parametrize("mode", ["refuse", "hang", "500"])
def test_broken_endpoint_never_blocks_the_caller_and_drops_are_counted(made, mode) -> None:
    with OtlpReceiver(mode, hang_s=10) as rx:
        tel = _tel(
            made,
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url},
        )
        started = time.perf_counter()
        for _ in range(5):
            _session(tel)
        caller = time.perf_counter() - started
        assert caller < 0.2  # span creation only; export happens elsewhere
        t0 = time.perf_counter()
        ok = tel.force_flush(0.3)
        assert time.perf_counter() - t0 < 0.6
        if mode != "hang":
            deadline = time.monotonic() + 3
            while tel.health()["export_failures"] == 0 and time.monotonic() < deadline:
                tel.force_flush(0.5)
            assert not ok or tel.health()["export_failures"] >= 1
        t0 = time.perf_counter()
        tel.shutdown(0.5)
        assert time.perf_counter() - t0 < 1.0
    health = tel.health()
    if mode != "hang":
        assert health["export_failures"] >= 1 and health["spans_dropped"] >= 1
    assert health["spans_exported"] == 0
    assert health["tracer_errors"] == 0


def test_full_queue_drops_are_counted_not_blocking(made) -> None:
    with OtlpReceiver("hang", hang_s=10) as rx:
        tel = _tel(
            made,
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url},
            max_queue_size=4,
        )
        rx_hit = time.monotonic()
        for _ in range(10):
            _session(tel)
        assert time.monotonic() - rx_hit < 0.5
        tel.force_flush(0.3)  # spans are built on the emitter thread; the export still hangs
        # 30 spans; at most 4 wait in the queue and one batch (max_export_batch_size is capped
        # at the queue size: 4) hangs in the exporter. The emitter thread may still be building
        # the last spans when the bounded flush returns, so poll (bounded) for the count.
        floor = 10 * 3 - 4 - 4
        deadline = time.monotonic() + 3.0
        while tel.health()["spans_dropped"] < floor and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tel.health()["spans_dropped"] >= floor
        tel.shutdown(0.3)


def test_shutdown_is_bounded_in_wall_time_with_a_hanging_exporter(made) -> None:
    with OtlpReceiver("hang", hang_s=10) as rx:
        tel = _tel(
            made,
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url},
            export_timeout_s=10.0,
        )
        _session(tel)
        tel.force_flush(0.2)
        rx.wait_for_hits(1, 2.0)  # the exporter is now stuck inside a request
        t0 = time.perf_counter()
        tel.shutdown(0.5)
        assert time.perf_counter() - t0 < 1.0


def test_shutdown_ends_sessions_still_open(made) -> None:
    with OtlpReceiver("ok") as rx:
        tel = _tel(
            made,
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url},
        )
        s = tel.start_session(session_info())
        s.user_audio(0.02, voiced=True)
        tel.shutdown(2.0)
        spans = rx.wait_for_spans(2)
    root = next(sp for sp in spans if sp.name == "voice_session")
    assert root.attributes[k.SESSION_END_REASON] == "server_shutdown"
    assert s.ended


def test_gzip_compression_from_the_standard_env_var(made, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    with OtlpReceiver("ok") as rx:
        tel = _tel(
            made,
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url},
        )
        _session(tel)
        tel.force_flush(3.0)
        rx.wait_for_spans(3)
    assert rx.requests[0].headers["content-encoding"] == "gzip"


class _ExplodingTracerProvider(NoOpTracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        class Tracer:
            def start_span(self, *a: Any, **kw: Any) -> Any:
                raise RuntimeError("tracer bug")

        return Tracer()


def test_tracer_exceptions_are_contained_and_counted() -> None:
    tel = VoiceTelemetry(_ExplodingTracerProvider(), capture_content=False)
    s = tel.start_session(SessionInfo("s", "u", "gemini-3.8-live"))
    s.connect_started()
    s.connect_finished()
    s.user_text("hi")
    s.model_audio(960)
    s.usage(UsageSnapshot(prompt=1))
    summary = s.turn_complete()
    s.usage("not a snapshot")  # type: ignore[arg-type]
    ended = s.end()
    assert summary is not None and summary.number == 1  # the voice path got its numbers
    assert ended is not None and ended.turns == 1
    assert tel.force_flush(1.0)  # the turn's spans fail on the emitter thread
    health = tel.health()
    assert health["tracer_errors"] >= 3
    assert "RuntimeError" in health["last_error"] or "TypeError" in health["last_error"]
    tel.shutdown(0.5)


def test_sdk_disabled_gives_no_op_providers() -> None:
    providers = configure_providers(env={"OTEL_SDK_DISABLED": "true"})
    assert isinstance(providers.tracer_provider, NoOpTracerProvider)
    assert providers.export_processors == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "number"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, r"\[0, 1\]"),
        ({"OTEL_METRICS_EXPORTER": "statsd"}, "OTEL_METRICS_EXPORTER"),
    ],
)
def test_bad_export_configuration_gets_a_clear_error(env: dict[str, str], message: str) -> None:
    env = {"OTEL_TRACES_EXPORTER": "none", **env}
    with pytest.raises(TelemetryConfigError, match=message):
        configure_providers(env=env)
