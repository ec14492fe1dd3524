"""Sampling keeps processors at 100 % and errored sessions exported; metrics are recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, AlwaysRecordSampler, ParentBased
from voicetrace.telemetry import PriceTable, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry import keys as k
from voicetrace.telemetry import metrics as vm
from voicetrace.telemetry.sampling import RecordAllSampler
from voicetrace.telemetry.setup import configure_telemetry, sampler_from_env

from tests.otlp_receiver import OtlpReceiver
from tests.telemetry.conftest import Traced, session_info


class Recorder(SpanProcessor):
    """Sees every ended span, sampled or not (as a usage ledger would)."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


@pytest.fixture
def sampled_out() -> Iterator[tuple[OtlpReceiver, Recorder, VoiceTelemetry]]:
    recorder = Recorder()
    with OtlpReceiver("ok") as rx:
        tel = configure_telemetry(
            env={
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url,
                "OTEL_TRACES_SAMPLER": "always_off",
            },
            pricing=PriceTable.load(None),
            extra_processors=[recorder],
            schedule_delay_ms=50,
            export_timeout_s=1.0,
        )
        yield rx, recorder, tel
        tel.shutdown(2.0)


def _session(tel: VoiceTelemetry, session_id: str, error: bool) -> None:
    s = tel.start_session(session_info(session_id=session_id))
    s.user_text("hello")
    s.model_audio(960)
    s.usage(UsageSnapshot(prompt=10, response=5))
    s.turn_complete()
    if error:
        s.model_error(1011, "internal")
    s.end("model_error" if error else "completed")


def test_sampler_records_all_around_parent_based() -> None:
    sampler = sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    )
    assert isinstance(sampler, RecordAllSampler)
    assert "ParentBased" in sampler.get_description()


def test_sdk_always_record_sampler_loses_attributes_ours_keeps_them() -> None:
    """Pins the SDK quirk RecordAllSampler exists for (fails if the SDK fixes it: then drop
    our sampler and use AlwaysRecordSampler again)."""
    seen: dict[str, dict[str, Any]] = {}
    for label, sampler in (
        ("sdk", AlwaysRecordSampler(ParentBased(ALWAYS_OFF))),
        ("ours", RecordAllSampler(ParentBased(ALWAYS_OFF))),
    ):
        recorder = Recorder()
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(recorder)
        provider.get_tracer("t").start_span(
            "chat", attributes={"gen_ai.usage.input_tokens": 7}
        ).end()
        seen[label] = dict(recorder.ended[0].attributes)
        assert not recorder.ended[0].context.trace_flags.sampled
        provider.shutdown()
    assert seen["sdk"] == {}
    assert seen["ours"] == {"gen_ai.usage.input_tokens": 7}


def test_sampled_out_sessions_reach_processors_but_not_the_exporter(sampled_out) -> None:
    rx, recorder, tel = sampled_out
    _session(tel, "healthy", error=False)
    tel.force_flush(2.0)
    assert {s.attributes[k.SESSION_ID] for s in recorder.ended} == {"healthy"}
    assert len(recorder.ended) == 3  # the ledger sees the generation at any sampling rate
    assert any(
        s.name.startswith("chat") and s.attributes[k.USAGE_INPUT_TOKENS] == 10
        for s in recorder.ended
    )
    assert rx.spans == []


def test_sessions_ending_in_error_are_exported_even_when_sampled_out(sampled_out) -> None:
    rx, _recorder, tel = sampled_out
    _session(tel, "healthy", error=False)
    _session(tel, "broken", error=True)
    tel.force_flush(2.0)
    spans = rx.wait_for_spans(4)
    assert {s.attributes[k.SESSION_ID] for s in spans} == {"broken"}
    assert sorted(s.name for s in spans) == [
        "chat gemini-3.8-live",
        "invoke_agent voicetrace",
        "model.error",  # the EVENT observation of the model error
        "voice_session",
    ]
    assert tel.health()["kept_error_traces"] == 1


def test_metrics_use_semconv_names_buckets_and_voice_instruments(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_audio(0.5, voiced=True)
    s.tool_call("c1", "search", {})
    s.tool_result("c1", {}, error="boom")
    s.model_audio(48000)
    s.interrupted()
    s.usage(UsageSnapshot(prompt=100, response=40))
    s.turn_complete()
    metrics = traced.metrics()
    assert metrics["voice.sessions.active"][0].value == 1
    s.end()
    metrics = traced.metrics()
    usage = metrics["gen_ai.client.token.usage"]
    by_type = {p.attributes[k.TOKEN_TYPE]: p for p in usage}
    assert by_type["input"].sum == 100 and by_type["output"].sum == 40
    assert tuple(by_type["input"].explicit_bounds) == vm.TOKEN_BUCKETS
    ttfc = metrics["gen_ai.client.operation.time_to_first_chunk"][0]
    assert tuple(ttfc.explicit_bounds) == vm.DURATION_BUCKETS and ttfc.count == 1
    assert metrics["gen_ai.client.operation.duration"][0].count == 1
    phases = {p.attributes["voice.turn.phase"] for p in metrics[vm.TURN_PHASE_DURATION]}
    assert phases == {"user_speech", "endpointing", "response", "total"}
    assert sum(p.value for p in metrics[vm.TURN_INTERRUPTIONS]) == 1
    assert sum(p.value for p in metrics[vm.AUDIO_INPUT]) == pytest.approx(0.5)
    assert sum(p.value for p in metrics[vm.AUDIO_OUTPUT]) == pytest.approx(1.0)
    assert sum(p.value for p in metrics[vm.TOOL_CALLS]) == 1
    assert sum(p.value for p in metrics[vm.TOOL_ERRORS]) == 1
    assert sum(p.value for p in metrics[vm.COST]) > 0
    assert metrics["voice.sessions.active"][0].value == 0
    spans = {p.attributes["state"]: p.value for p in metrics[vm.TELEMETRY_SPANS]}
    assert spans["started"] == traced.tel.health()["spans_started"] >= 4
    # no per-session or per-user cardinality in metric attributes
    for points in metrics.values():
        for p in points:
            assert k.SESSION_ID not in p.attributes and k.USER_ID not in p.attributes


def test_configure_telemetry_accepts_metric_readers() -> None:
    reader = InMemoryMetricReader()
    tel = configure_telemetry(
        env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
        metric_readers=[reader],
    )
    tel.start_session(session_info()).end()
    names = {
        m.name
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert "voice.sessions.active" in names
    tel.shutdown(1.0)


def test_prometheus_reader_is_available_lazily() -> None:
    from voicetrace.telemetry.setup import prometheus_reader

    reader: Any = prometheus_reader()
    assert type(reader).__name__ == "PrometheusMetricReader"
    reader.shutdown()
