"""The app as an operator meets it: OpenAPI docs, health, the CLI and the offline demo."""

from __future__ import annotations

import subprocess
import sys

import jwt
import pytest
from voicetrace.service.cli import main


async def test_openapi_describes_every_endpoint(start_service):
    svc = await start_service()
    spec = (await svc.http.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/live-sessions"]) >= {"get", "post"}
    assert set(paths["/live-sessions/{session_id}"]) >= {"get", "patch", "delete"}
    assert "put" in paths["/live-sessions/{session_id}/pause"]
    assert "put" in paths["/live-sessions/{session_id}/resume"]
    assert "get" in paths["/health"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
    assert (await svc.http.get("/docs")).status_code == 200


async def test_health_reports_live_sessions_and_telemetry_counters(start_service):
    svc = await start_service()
    body = (await svc.http.get("/health")).json()
    assert body["status"] == "ok" and body["live_sessions"] == 0
    assert "spans_dropped" in body["telemetry"]


def test_token_command_mints_a_token_for_the_configured_secret(capsys, monkeypatch):
    monkeypatch.setenv("VOICETRACE_JWT_SECRET", "cli-secret-0123456789abcdef0123456789")
    assert main(["token", "--user", "alice", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "cli-secret-0123456789abcdef0123456789", algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 60


def test_demo_runs_offline_and_prints_the_trace_tree(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "voicetrace.service.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": "none"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "voice_session" in out and "execute_tool search_nearby" in out
    assert out.count("invoke_agent voicetrace") >= 6
    assert "interrupted" in out
    assert "barge-in" in out
    assert "never heard" in out  # the cost of audio cut off by the barge-in is on the trace


@pytest.mark.parametrize("argv", [["token"], ["serve", "--port", "notanumber"]])
def test_cli_rejects_bad_arguments_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "voicetrace" in capsys.readouterr().err


async def test_metrics_endpoint_is_off_by_default(start_service):
    svc = await start_service()
    response = await svc.http.get("/metrics")
    assert response.status_code == 404
    assert "OTEL_METRICS_EXPORTER=prometheus" in response.json()["detail"]


async def test_prometheus_metrics_show_voice_and_genai_histograms(start_service, monkeypatch):
    from voicetrace.service.client import VoiceClient

    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    svc = await start_service()
    session = await svc.create_session("mia")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("mia")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello")
        await client.wait_for("turn_complete")
        await client.send("end")
        await client.wait_for("session_ended")
    svc.telemetry.force_flush(5.0)
    body = (await svc.http.get("/metrics")).text
    assert "gen_ai_client_operation_duration_seconds_bucket" in body
    assert "gen_ai_client_token_usage" in body
    for name in (
        "voice_turns_total",
        "voice_turn_phase_duration_seconds_bucket",
        "voice_tokens_total",
        "voice_sessions_active",
        "voice_telemetry_spans_total",
    ):
        assert name in body, name


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "development JWT secret"),
        ({"VOICETRACE_JWT_SECRET": "short"}, "at least 32 bytes"),
    ],
)
def test_serve_refuses_unsafe_secrets_on_a_public_address(env, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert message in capsys.readouterr().err


def test_token_lifetime_defaults_to_the_configured_ttl(capsys, monkeypatch):
    monkeypatch.setenv("VOICETRACE_JWT_SECRET", "cli-secret-0123456789abcdef0123456789")
    monkeypatch.setenv("VOICETRACE_JWT_TTL_S", "120")
    assert main(["token", "--user", "bob"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "cli-secret-0123456789abcdef0123456789", algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120
