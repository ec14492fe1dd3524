"""Sessions end cleanly on every path: client disconnects at each phase, model errors,
server shutdown (in process and by SIGTERM to a real `voicetrace serve`), and crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import SpanProcessor
from voicetrace.emulator import Emulator, Scenario, ScriptedTurn
from voicetrace.service.client import VoiceClient
from voicetrace.service.voice.audio import silence, speech_like
from voicetrace.service.voice.tools import ToolRegistry

from tests.conftest import JWT_SECRET
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.asyncio


class OpenSpans(SpanProcessor):
    """Tracks spans started but not yet ended — the thing that must be empty after a session."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.open[span.context.span_id] = span.name

    def on_end(self, span: Any) -> None:
        self.open.pop(span.context.span_id, None)


async def wait_state(svc: Any, session_id: str, user: str, state: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = await svc.get_session(session_id, user)
        if current["state"] == state or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


def root_of(svc: Any, session_id: str) -> Any:
    roots = [
        s
        for s in svc.finished_spans()
        if s.name == "voice_session" and s.attributes.get("session.id") == session_id
    ]
    assert len(roots) == 1, f"expected one ended root span, got {len(roots)}"
    return roots[0]


def slow_tools() -> ToolRegistry:
    registry = ToolRegistry(timeout_s=10)

    @registry.register
    async def search_nearby(query: str, radius_m: int = 1000) -> dict:
        """Search places nearby (slow on purpose)."""
        await asyncio.sleep(5)
        return {"places": []}

    return registry


@pytest.mark.parametrize("phase", ["mid_audio", "mid_tool_call", "mid_model_response"])
async def test_disconnect_at_any_phase_leaves_no_span_open_and_the_session_ended(
    start_service, phase
):
    open_spans = OpenSpans()
    scenario = Scenario(user_says=["Tell me a long story about the harbour."], realtime=True)
    svc = await start_service(
        scenario=scenario if phase == "mid_model_response" else None,
        extra_processors=(open_spans,),
        tools=slow_tools() if phase == "mid_tool_call" else None,
    )
    session = await svc.create_session("alice")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("alice")) as client:
        await client.wait_for("session_started")
        if phase == "mid_audio":
            await client.say(speech_like(0.5))  # no trailing silence: the user is mid-sentence
            await asyncio.sleep(0.1)
        elif phase == "mid_tool_call":
            await client.send("text", text="Find a coffee place nearby")
            await client.wait_for("tool_call")
        else:
            await client.say(speech_like(0.6) + silence(0.6))
            await client.wait_for("transcript", where=lambda m: m["role"] == "model")
        client.ws.transport.abort()  # vanish without a close frame, like a dropped network
    ended = await wait_state(svc, session["id"], "alice", "ENDED")
    assert ended["state"] == "ENDED"
    root = root_of(svc, session["id"])
    assert root.attributes["voice.session.end_reason"] == "client_disconnect"
    assert [n for n in open_spans.open.values()] == []
    if phase != "mid_audio":
        turns = [
            s
            for s in svc.finished_spans()
            if s.name.startswith("invoke_agent") and s.attributes.get("session.id") == session["id"]
        ]
        assert [t.attributes["voice.turn.end_reason"] for t in turns] == ["client_disconnect"]


async def test_model_error_ends_the_session_with_an_error_frame(start_service):
    svc = await start_service(scenario=Scenario(turns={1: ScriptedTurn(close_code=1011)}))
    session = await svc.create_session("bob")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("bob")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello?")
        error = await client.wait_for("error")
        ended = await client.wait_for("session_ended")
        assert await client.wait_closed() == 1011
    assert error["code"] == "model_error" and "1011" in error["message"]
    assert ended["reason"] == "model_error"
    root = root_of(svc, session["id"])
    assert root.attributes["voice.session.end_reason"] == "model_error"
    assert not root.status.is_ok


async def test_in_process_shutdown_tells_live_sessions_and_ends_their_spans(start_service):
    svc = await start_service()
    session = await svc.create_session("carol")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("carol")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hi")
        await client.wait_for("turn_complete")
        svc.server.should_exit = True
        ended = await client.wait_for("session_ended")
        assert await client.wait_closed() == 1001
    assert ended["reason"] == "server_shutdown" and ended["summary"]["turns"] == 1
    assert root_of(svc, session["id"]).attributes["voice.session.end_reason"] == "server_shutdown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(
    tmp_path: Path,
    emulator: Emulator,
    port: int,
    otlp: str | None,
    log_level: str = "warning",
    **extra_env: str,
) -> subprocess.Popen:
    env = {
        **os.environ,
        **emulator.env(),
        "VOICETRACE_JWT_SECRET": JWT_SECRET,
        "VOICETRACE_SQLITE_PATH": str(tmp_path / "serve.db"),
        "VOICETRACE_LOG_LEVEL": log_level,
        # A restart is the same replica: it may end what it served before (docs/reliability.md).
        "VOICETRACE_INSTANCE_ID": "serve-under-test",
        "OTEL_TRACES_EXPORTER": "otlp" if otlp else "none",
    }
    if otlp:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
    env.update(extra_env)
    return subprocess.Popen(
        [sys.executable, "-m", "voicetrace.service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if (await http.get(f"{base}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("voicetrace serve did not become healthy")


async def _create(base: str, token: str) -> str:
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{base}/live-sessions",
            json={"mode": "test"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        return r.json()["id"]


async def test_sigterm_drains_live_sessions_and_flushes_spans(tmp_path):
    from voicetrace.service.api.auth import mint_token

    token = mint_token("dave", JWT_SECRET)
    async with Emulator() as emulator:
        with OtlpReceiver() as receiver:
            port = _free_port()
            proc = _serve(tmp_path, emulator, port, otlp=receiver.base_url)
            try:
                base = f"http://127.0.0.1:{port}"
                await _wait_healthy(base, proc)
                session_id = await _create(base, token)
                url = f"ws://127.0.0.1:{port}/v1/voice/{session_id}"
                async with VoiceClient.connect(url, token) as client:
                    await client.wait_for("session_started")
                    await client.send("text", text="Hi")
                    await client.wait_for("turn_complete")
                    proc.send_signal(signal.SIGTERM)
                    ended = await client.wait_for("session_ended")
                    assert await client.wait_closed() == 1001
                assert ended["reason"] == "server_shutdown"
                await asyncio.to_thread(proc.wait, 15)
            finally:
                if proc.poll() is None:
                    proc.kill()
            roots = [s for s in receiver.wait_for_spans(1) if s.name == "voice_session"]
            assert len(roots) == 1
            assert roots[0].attributes["voice.session.end_reason"] == "server_shutdown"
            assert roots[0].attributes["session.id"] == session_id


async def test_sessions_left_live_by_a_crash_are_ended_on_the_next_start(tmp_path):
    from voicetrace.service.api.auth import mint_token

    token = mint_token("erin", JWT_SECRET)
    async with Emulator() as emulator:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _serve(tmp_path, emulator, port, otlp=None)
        try:
            await _wait_healthy(base, proc)
            session_id = await _create(base, token)
            async with VoiceClient.connect(
                f"ws://127.0.0.1:{port}/v1/voice/{session_id}", token
            ) as client:
                await client.wait_for("session_started")
                proc.kill()  # SIGKILL: no shutdown code runs, the row stays LIVE
                await asyncio.to_thread(proc.wait, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
        proc = _serve(tmp_path, emulator, port, otlp=None)
        try:
            await _wait_healthy(base, proc)
            async with httpx.AsyncClient() as http:
                r = await http.get(
                    f"{base}/live-sessions/{session_id}",
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert r.json()["state"] == "ENDED"
            assert r.json()["end_reason"] == "recovered_after_restart"
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 15)


async def test_a_sigkilled_sessions_usage_and_trace_survive_the_restart(tmp_path):
    """A crash loses at most the turn in flight: each settled turn was stored as it ended, the
    restart writes the summary from them, and the trace gets the root span it never had —
    same trace and span id, so the exported turns hang under it in Langfuse."""
    from voicetrace.service.api.auth import mint_token

    token = mint_token("fay", JWT_SECRET)
    async with Emulator() as emulator:
        with OtlpReceiver() as receiver:
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            fast_export = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
            proc = _serve(tmp_path, emulator, port, otlp=receiver.base_url, **fast_export)
            try:
                await _wait_healthy(base, proc)
                session_id = await _create(base, token)
                url = f"ws://127.0.0.1:{port}/v1/voice/{session_id}"
                async with VoiceClient.connect(url, token) as client:
                    await client.wait_for("session_started")
                    for n in range(1, 4):
                        await client.send("text", text=f"Turn {n}, please")
                        await client.wait_for("turn_complete", count=n)
                    receiver.wait_for_spans(1 + 2 * 3)  # connect + (turn, chat) × 3
                    proc.kill()  # SIGKILL: no shutdown code runs; the root never ends
                    await asyncio.to_thread(proc.wait, 10)
            finally:
                if proc.poll() is None:
                    proc.kill()
            turns = client.of_type("turn_complete")
            assert not [s for s in receiver.spans if s.name == "voice_session"]

            proc = _serve(tmp_path, emulator, port, otlp=receiver.base_url, **fast_export)
            try:
                await _wait_healthy(base, proc)
                async with httpx.AsyncClient() as http:
                    r = await http.get(
                        f"{base}/live-sessions/{session_id}",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                roots = [
                    s for s in receiver.wait_for_spans(1 + 2 * 3 + 1) if s.name == "voice_session"
                ]
            finally:
                proc.terminate()
                await asyncio.to_thread(proc.wait, 15)

    stored = r.json()
    assert (stored["state"], stored["end_reason"]) == ("ENDED", "recovered_after_restart")
    assert stored["summary"]["turns"] == 3
    assert stored["summary"]["input_tokens"] == sum(t["input_tokens"] for t in turns)
    assert stored["summary"]["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in turns))
    expected_minutes = sum(t["audio_in_ms"] + t["audio_out_ms"] for t in turns) / 60_000
    assert stored["audio_minutes_used"] == pytest.approx(expected_minutes)

    (root,) = roots
    children = [s for s in receiver.spans if s.attributes.get("session.id") == session_id]
    turn_spans = [s for s in children if s.name.startswith("invoke_agent")]
    assert len(turn_spans) == 3
    assert {s.trace_id for s in children} == {root.trace_id}
    assert {s.parent_span_id for s in turn_spans} == {root.span_id}
    assert root.attributes["voice.session.recovered"] is True
    assert root.attributes["voice.session.end_reason"] == "recovered_after_restart"
    assert root.attributes["voice.session.turns"] == 3
    assert root.attributes["voice.session.cost_usd"] == pytest.approx(stored["summary"]["cost_usd"])
    assert root.attributes["langfuse.trace.name"] == "voice_session"
    assert root.attributes["user.id"] == "fay"


async def test_a_query_string_token_never_reaches_the_server_log(tmp_path):
    import websockets
    from voicetrace.service.api.auth import mint_token

    token = mint_token("fay", JWT_SECRET)
    async with Emulator() as emulator:
        port = _free_port()
        proc = _serve(tmp_path, emulator, port, otlp=None, log_level="info")
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_healthy(base, proc)
            session_id = await _create(base, token)
            url = f"ws://127.0.0.1:{port}/v1/voice/{session_id}?token={token}"
            async with websockets.connect(url) as ws:
                assert '"session_started"' in await asyncio.wait_for(ws.recv(), 10)
        finally:
            proc.terminate()
            output, _ = await asyncio.to_thread(proc.communicate, timeout=15)
    log = output.decode()
    assert f"/v1/voice/{session_id}?token=[REDACTED]" in log  # the line is there, the token is not
    assert token not in log and token.split(".")[2] not in log


async def test_ending_a_session_while_the_model_connects_does_not_wait_for_it(
    start_service, monkeypatch
):
    svc = await start_service(model_connect_timeout_s=10)
    held: list[asyncio.StreamWriter] = []  # a "Gemini" that accepts TCP and never answers TLS
    silent = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"https://127.0.0.1:{port}")
    try:
        session = await svc.create_session("max")
        async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("max")) as client:
            await asyncio.sleep(0.5)  # the bridge is stuck connecting to the model
            started = time.monotonic()
            response = await svc.http.delete(
                f"/live-sessions/{session['id']}",
                headers={"Authorization": f"Bearer {svc.token('max')}"},
            )
            assert response.status_code == 200
            ended = await client.wait_for("session_ended", timeout=5)
            assert time.monotonic() - started < 2  # not the 10 s connect timeout
            assert not client.of_type("session_started")
        assert ended["reason"] == "ended_by_user"
    finally:
        for writer in held:
            writer.close()
        silent.close()
