"""The standard exporter variables, end to end: the service and the demo, configured by them
alone, export over gRPC to a real receiver (grpcio + opentelemetry-proto's servicers), which
decodes the same spans and metrics the HTTP path delivers; offline, the demo exports nothing and
says so without a single export error; a protocol that cannot be honoured is a message at
startup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from voicetrace.service.cli import main
from voicetrace.service.client import VoiceClient

from tests.otlp_grpc_receiver import GrpcOtlpReceiver
from tests.service.otlp_helpers import assert_same_as_recorded, assert_trace_contract

MODEL = "gemini-3.8-live"


async def test_the_service_with_the_spec_defaults_sends_spans_and_metrics_over_grpc(
    start_service, monkeypatch
) -> None:
    with GrpcOtlpReceiver() as rx:
        # Only the protocol and endpoint: OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER take
        # the specification's default, `otlp`.
        monkeypatch.delenv("OTEL_TRACES_EXPORTER")
        monkeypatch.delenv("OTEL_METRICS_EXPORTER")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "voicetrace-grpc")
        svc = await start_service()
        created = await svc.create_session("alice")
        async with VoiceClient.connect(svc.ws_url(created["id"]), svc.token("alice")) as client:
            await client.wait_for("session_started")
            await client.send("text", text="Hello over gRPC")
            await client.wait_for("turn_complete")
            await client.send("end")
            await client.wait_for("session_ended")
        assert svc.telemetry.force_flush(5.0)
        spans = [s for s in rx.spans if s.attributes.get("session.id") == created["id"]]
        tree = assert_trace_contract(spans, session_id=created["id"], user_id="alice", model=MODEL)
        recorded = [
            s for s in svc.spans.get_finished_spans() if s.attributes["session.id"] == created["id"]
        ]
        assert_same_as_recorded(spans, recorded)
        assert tree.root.resource["service.name"] == "voicetrace-grpc"
        assert rx.requests[0].path == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        # The flush pushed the metrics too, to the same endpoint over the same protocol.
        metrics = rx.wait_for_metrics("voice.turns")
        turns = [m for m in metrics if m.name == "voice.turns"]
        assert turns and turns[0].resource["service.name"] == "voicetrace-grpc"
        assert {"gen_ai.client.token.usage", "voice.turn.phase.duration"} <= {
            m.name for m in metrics
        }


@pytest.mark.timeout(120)
def test_the_demo_exports_over_grpc_where_its_line_says(tmp_path: Path) -> None:
    with GrpcOtlpReceiver() as rx:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
        }
        done = subprocess.run(
            [sys.executable, "-m", "voicetrace.service.cli", "demo", "--quiet"],
            capture_output=True,
            text=True,
            timeout=110,
            cwd=tmp_path,
            env=env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        line = next(x for x in done.stdout.splitlines() if "exported to:" in x)
        target = f"OTLP/gRPC {rx.endpoint} (plaintext)"
        assert line.endswith(
            f"exported to: in-memory (this tree); traces → {target}; metrics → {target}"
        ), line
        printed = int(line.split()[0])  # "N spans; exported to: …"
        spans = rx.wait_for_spans(printed)
        assert len(spans) == printed  # every span of the tree reached the receiver
        assert {"voice_session", "execute_tool search_nearby"} <= {s.name for s in spans}
        assert "voice.turns" in {m.name for m in rx.wait_for_metrics("voice.turns")}


@pytest.mark.timeout(120)
def test_the_demo_offline_exports_nothing_and_logs_no_export_error(tmp_path: Path) -> None:
    # No OTEL_* at all: the spec's defaults would be OTLP to localhost:4318 for both signals.
    done = subprocess.run(
        [sys.executable, "-m", "voicetrace.service.cli", "demo", "--quiet"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exported to: in-memory (this tree); traces → none; metrics → none" in done.stdout
    assert "4318" not in done.stdout + done.stderr and "export" not in done.stderr.lower()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "no OTLP/JSON exporter"),
        ({"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"),
    ],
)
def test_serve_refuses_an_unusable_otlp_protocol_with_a_message_before_starting(
    env: dict[str, str], message: str, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.delenv("OTEL_METRICS_EXPORTER")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--port", "0"]) == 2
    assert message in capsys.readouterr().err
