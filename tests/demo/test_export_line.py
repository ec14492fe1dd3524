"""The demo's "exported to" line tells the truth for every exporter setting: it is rendered from
the `ExportPlan` the providers were built from, and what it names is where spans and metrics
really arrive (a real OTLP/HTTP and a real OTLP/gRPC receiver)."""

from __future__ import annotations

import pytest
from voicetrace.demo.run import export_line
from voicetrace.telemetry import PriceTable, UsageSnapshot
from voicetrace.telemetry.setup import configure_telemetry
from voicetrace.telemetry.targets import offline_defaults, plan_exports

from tests.otlp_grpc_receiver import GrpcOtlpReceiver
from tests.otlp_receiver import OtlpReceiver
from tests.telemetry.conftest import session_info

LANGFUSE = {
    "LANGFUSE_PUBLIC_KEY": "pk-lf-demo",
    "LANGFUSE_SECRET_KEY": "sk-lf-demo-secret",
    "LANGFUSE_HOST": "http://127.0.0.1:3000",
}
HINT = " (set OTEL_EXPORTER_OTLP_ENDPOINT or LANGFUSE_PUBLIC_KEY/SECRET_KEY to export)"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, f"in-memory (this tree); traces → none; metrics → none{HINT}"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            "in-memory (this tree); traces → OTLP/HTTP http://c:4318/v1/traces; "
            "metrics → OTLP/HTTP http://c:4318/v1/metrics",
        ),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317"},
            "in-memory (this tree); traces → OTLP/gRPC c:4317 (TLS); "
            "metrics → OTLP/gRPC c:4317 (TLS)",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317",
            },
            "in-memory (this tree); traces → OTLP/gRPC http://c:4317 (plaintext); metrics → none",
        ),
        (
            LANGFUSE,
            "in-memory (this tree); traces → Langfuse http://127.0.0.1:3000; metrics → none",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **LANGFUSE},
            "in-memory (this tree); traces → OTLP/HTTP http://c:4318/v1/traces, "
            "Langfuse http://127.0.0.1:3000; metrics → OTLP/HTTP http://c:4318/v1/metrics",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
            },
            f"in-memory (this tree); traces → none; metrics → none{HINT}",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"},
            "in-memory (this tree); traces → console (stdout); metrics → console (stdout)",
        ),
        (
            {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            "nothing (OTEL_SDK_DISABLED=true: no spans were recorded)",
        ),
    ],
)
def test_the_line_names_each_configured_destination(env: dict[str, str], line: str) -> None:
    assert export_line(plan_exports(offline_defaults(env))) == line
    assert "sk-lf-demo-secret" not in line


def test_what_the_line_names_is_where_spans_and_metrics_arrive() -> None:
    """Traces over gRPC to one receiver, metrics over HTTP to another: each gets its signal
    only, at the endpoint the line shows."""
    with GrpcOtlpReceiver() as grpc_rx, OtlpReceiver() as http_rx:
        env = offline_defaults(
            {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": grpc_rx.endpoint,
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{http_rx.base_url}/v1/metrics",
            }
        )
        plan = plan_exports(env)
        line = export_line(plan)
        assert f"traces → OTLP/gRPC {grpc_rx.endpoint} (plaintext)" in line
        assert f"metrics → OTLP/HTTP {http_rx.base_url}/v1/metrics" in line
        tel = configure_telemetry(
            "voicetrace-demo",
            env=env,
            plan=plan,
            pricing=PriceTable.load(None),
            usage_wait_s=0.1,
            schedule_delay_ms=50,
            export_timeout_s=2.0,
        )
        trace = tel.start_session(session_info())
        trace.user_text("hello")
        trace.model_audio(4800)
        trace.usage(UsageSnapshot(prompt=100, response=20))
        trace.turn_complete()
        trace.end()
        tel.shutdown(5.0)  # the final metrics collection is pushed at shutdown
        names = {s.name for s in grpc_rx.wait_for_spans(3)}
        assert {"voice_session", "invoke_agent voicetrace"} <= names
        assert "voice.turns" in {m.name for m in http_rx.wait_for_metrics("voice.turns")}
        # …and neither receiver got the other's signal.
        assert grpc_rx.metrics == [] and http_rx.requests == []
