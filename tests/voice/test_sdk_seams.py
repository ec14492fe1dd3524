"""The two places the adapter relies on google-genai internals, pinned to the installed SDK.

- `AsyncSession._ws`: the hot audio path writes the exact JSON `send_realtime_input` would send
  straight to the session's websocket (saves ~30 µs of pydantic work per 20 ms chunk).
- `google.genai._base_url.get_base_url`: the Live endpoint the SDK itself resolves, so the
  spans' `server.address`/`server.port` name what the SDK really connects to.
If an SDK upgrade breaks either, these fail before production does.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from google import genai
from google.genai import _base_url
from google.genai.live import AsyncSession
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.voice import gemini

from tests.voice.conftest import speech


async def test_the_audio_fast_path_sends_what_send_realtime_input_sends(start_emulator) -> None:
    emu: Emulator = await start_emulator(Scenario(speed=50.0))
    frame = speech(0.02)
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config={}) as session:
        assert isinstance(session, AsyncSession)
        ws = getattr(session, "_ws", None)
        assert ws is not None and callable(ws.send), "AsyncSession._ws.send is gone"
        await session.send_realtime_input(
            audio=genai.types.Blob(data=frame, mime_type="audio/pcm;rate=16000")
        )
        await ws.send(gemini.realtime_audio_json(frame))
    sdk_sent, ours = [
        e.message for e in emu.wire.select(direction="in") if "realtime_input" in str(e.message)
    ][:2]
    assert ours == sdk_sent
    assert json.loads(gemini.realtime_audio_json(frame)) == sdk_sent


def test_the_sdk_resolves_the_base_url_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://live.example.test:9443")
    base = _base_url.get_base_url(False, None)
    assert base is not None
    parts = urlsplit(base)
    assert (parts.hostname, parts.port) == ("live.example.test", 9443)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL")
    monkeypatch.delenv("GOOGLE_VERTEX_BASE_URL", raising=False)
    assert _base_url.get_base_url(False, None) in (None, "")


async def _offered_extensions(monkeypatch, tmp_path, make_client) -> str | None:
    """Connect the SDK to a minimal TLS Live stub and return the extensions it offered."""
    import ssl

    from voicetrace.emulator.tls import write_certificates
    from websockets.asyncio.server import serve

    tmp_path.mkdir()
    certs = write_certificates(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certs.cert_path, certs.key_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_path))

    offered: list[str | None] = []

    async def handler(ws) -> None:
        await ws.recv()  # the setup
        await ws.send(json.dumps({"setupComplete": {}}))
        await ws.close()

    def process_request(connection, request):  # websockets' own hook: headers as received
        offered.append(request.headers.get("Sec-WebSocket-Extensions"))

    async with serve(handler, "127.0.0.1", 0, process_request=process_request, ssl=tls) as server:
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"https://127.0.0.1:{port}")
        client = await make_client()
        async with client.aio.live.connect(model="gemini-3.8-live", config={}):
            pass
    (extensions,) = offered
    return extensions


async def test_the_live_socket_offers_no_compression_unless_asked(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    ours = await _offered_extensions(
        monkeypatch, tmp_path / "a", lambda: gemini.GeminiClients().get()
    )
    asked = await _offered_extensions(
        monkeypatch, tmp_path / "b", lambda: gemini.GeminiClients(compression=True).get()
    )
    assert ours is None  # no permessage-deflate: PCM does not compress, deflate costs CPU
    assert asked is not None and "permessage-deflate" in asked  # the SDK's default
