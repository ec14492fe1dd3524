"""The standard `OTEL_EXPORTER_OTLP_[{SIGNAL}_]TIMEOUT` reaches the OTLP exporters: with no
`export_timeout_s` passed, an export to a receiver that never answers gives up after the
variable's time (observed on the wall clock), not after a default of ours."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from voicetrace.telemetry.setup import TelemetryProviders, configure_providers

from tests.otlp_receiver import OtlpReceiver

ENV_TIMEOUT_S = 0.4  # the SDK reads these variables in seconds
HANG_S = 30.0  # far past any default timeout: only the variable can end the export early


@pytest.fixture
def hanging() -> Iterator[OtlpReceiver]:
    with OtlpReceiver("hang", hang_s=HANG_S) as rx:
        yield rx


def _providers(rx: OtlpReceiver, signal: str) -> TelemetryProviders:
    other = "METRICS" if signal == "TRACES" else "TRACES"
    return configure_providers(
        "voicetrace-test",
        env={
            f"OTEL_{signal}_EXPORTER": "otlp",
            f"OTEL_{other}_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.base_url,
        },
        schedule_delay_ms=20,
    )


def _shutdown(providers: TelemetryProviders) -> None:
    for processor in providers.export_processors:
        processor.shutdown()
    if isinstance(providers.meter_provider, SdkMeterProvider):
        providers.meter_provider.shutdown(timeout_millis=500)


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
)
def test_the_span_exporter_gives_up_after_the_environments_timeout(
    hanging: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, str(ENV_TIMEOUT_S))
    providers = _providers(hanging, "TRACES")
    try:
        providers.tracer_provider.get_tracer("t").start_span("s").end()
        hanging.wait_for_hits(1, 5.0)  # the exporter is now inside a request that never ends
        started = time.monotonic()
        while providers.health.snapshot()["export_failures"] == 0:
            assert time.monotonic() - started < 4.0, "the export outlived the env timeout"
            time.sleep(0.02)
    finally:
        _shutdown(providers)


def test_the_metric_exporter_gives_up_after_the_environments_timeout(
    hanging: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", str(ENV_TIMEOUT_S))
    providers = _providers(hanging, "METRICS")
    assert isinstance(providers.meter_provider, SdkMeterProvider)
    try:
        providers.meter_provider.get_meter("t").create_counter("c").add(1)
        started = time.monotonic()
        providers.meter_provider.force_flush(timeout_millis=20_000)
        elapsed = time.monotonic() - started
        assert hanging.wait_for_hits(1, 1.0) >= 1
        assert elapsed < 4.0, f"the metric export took {elapsed:.1f} s"
    finally:
        _shutdown(providers)
