"""No token, key or blurred secret reaches the logs at ANY level — a real `voicetrace serve`
subprocess at VOICETRACE_LOG_LEVEL=debug, where uvicorn's websockets protocol logs every frame and
every handshake header (`Sec-WebSocket-Protocol: voicetrace.v1, bearer.<jwt>`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import websockets
from voicetrace.emulator import Emulator
from voicetrace.service.api.auth import mint_token
from voicetrace.service.api.log_redaction import SecretRedactor
from voicetrace.service.client import VoiceClient
from websockets.frames import Frame, Opcode

from tests.conftest import JWT_SECRET

SECRET = "hunter2-Blurred-Secret-7731"
API_KEY = "AIzaSy-emulator-key-that-must-never-be-logged-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, emulator: Emulator, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **emulator.env(),
        "VOICETRACE_JWT_SECRET": JWT_SECRET,
        "VOICETRACE_SQLITE_PATH": str(tmp_path / "serve.db"),
        "VOICETRACE_LOG_LEVEL": "debug",
        "OTEL_TRACES_EXPORTER": "none",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "voicetrace.service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "voicetrace serve exited"
            try:
                if (await http.get(f"{base}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("voicetrace serve did not become healthy")


async def test_debug_logs_never_contain_the_jwt_the_api_key_or_a_blurred_secret(
    tmp_path: Path,
) -> None:
    token = mint_token("gus", JWT_SECRET)
    async with Emulator(api_key=API_KEY) as emulator:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _serve(tmp_path, emulator, port)
        try:
            await _wait_healthy(base, proc)
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=base, headers=auth) as http:
                created = await http.post(
                    "/live-sessions", json={"mode": "test", "secrets_blurred": [SECRET]}
                )
                assert created.status_code == 201, created.text
                session_id = created.json()["id"]
            url = f"ws://127.0.0.1:{port}/v1/voice/{session_id}"
            async with VoiceClient.connect(url, token) as client:  # bearer.<jwt> subprotocol
                await client.wait_for("session_started")
                # Short, so the frame preview websockets logs would show it whole.
                await client.send("text", text=SECRET)
                await client.wait_for("turn_complete")
                await client.send("end")
                await client.wait_for("session_ended")
            # And the query-string spelling of the token, refused after the handshake.
            async with websockets.connect(f"{url}?token={token}") as ws:
                await asyncio.wait_for(ws.wait_closed(), 10)
        finally:
            proc.terminate()
            output, _ = await asyncio.to_thread(proc.communicate, timeout=15)
    log = output.decode(errors="replace")
    # The run really logged at debug level, frames and handshakes included …
    assert "DEBUG" in log or "debug" in log.lower(), log[-2000:]
    assert "TEXT" in log and "sec-websocket-protocol" in log.lower(), log[-3000:]
    # … and none of the secrets made it.
    header, payload, signature = token.split(".")
    for leaked in (token, signature, f"{header}.{payload}", SECRET, API_KEY):
        assert leaked not in log, f"{leaked[:12]}… found in the debug log"


# -- the redactor on its own: each kind of record it rewrites ---------------------------------


def _formatted(msg: str, *args: object, exc: BaseException | None = None) -> str:
    record = logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, msg, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    SecretRedactor().filter(record)
    return logging.Formatter("%(message)s").format(record)


def test_the_bearer_subprotocol_header_keeps_the_protocol_name_only() -> None:
    token = mint_token("hal", JWT_SECRET)
    line = _formatted("< %s: %s", "Sec-WebSocket-Protocol", f"voicetrace.v1, bearer.{token}")
    assert line == "< Sec-WebSocket-Protocol: voicetrace.v1, [REDACTED]"


def test_credential_headers_are_blanked_and_others_kept() -> None:
    assert _formatted("> %s: %s", "x-goog-api-key", API_KEY) == "> x-goog-api-key: [REDACTED]"
    assert _formatted("< %s: %s", "Authorization", "Bearer abc") == "< Authorization: [REDACTED]"
    assert _formatted("< %s: %s", "Host", "127.0.0.1") == "< Host: 127.0.0.1"


def test_frames_are_logged_by_opcode_and_size_only() -> None:
    frame = Frame(Opcode.TEXT, SECRET.encode())
    assert _formatted("> %s", frame) == f"> TEXT [{len(SECRET)} bytes, payload not logged]"


def test_jwts_and_credential_queries_are_blanked_anywhere_even_in_tracebacks() -> None:
    token = mint_token("ida", JWT_SECRET)
    assert token not in _formatted("handshake for %s failed", token)
    assert (
        _formatted("GET /v1/voice/x?token=%s&a=1", token) == "GET /v1/voice/x?token=[REDACTED]&a=1"
    )
    assert "key=[REDACTED]" in _formatted("GET /ws?key=%s", API_KEY)
    try:
        raise ValueError(f"bad token {token}")
    except ValueError as exc:
        text = _formatted("failed", exc=exc)
    assert "ValueError" in text and token not in text
