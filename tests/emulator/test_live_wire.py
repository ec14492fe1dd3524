"""Wire-level cases a raw WebSocket client can produce and the SDK never does: key casings,
base64 alphabets, binary client frames, query-string keys, protocol violations."""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

import pytest
import websockets
from voicetrace.emulator import Emulator, Scenario, ScriptedTurn
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.emulator.helpers import FAST, silence, speech

LIVE = "/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"


def connect(
    emu: Emulator,
    query: str = "",
    headers: dict[str, str] | None = None,
    version: str = "v1beta",
    method: str = "BidiGenerateContent",
) -> Any:
    url = emu.base_url.replace("https://", "wss://") + LIVE.format(version=version, method=method)
    context = ssl.create_default_context(cafile=emu.cert_path)
    return websockets.connect(url + query, ssl=context, additional_headers=headers or {})


async def recv_json(ws: Any) -> dict[str, Any]:
    return json.loads(await ws.recv())


async def until_turn_complete(ws: Any) -> list[dict[str, Any]]:
    messages = []
    while True:
        frame = await ws.recv()
        assert isinstance(frame, bytes), "the server sends JSON in binary frames"
        messages.append(json.loads(frame))
        if messages[-1].get("serverContent", {}).get("turnComplete"):
            return messages


async def close_code(ws: Any) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            await ws.recv()
    return caught.value.rcvd.code, caught.value.rcvd.reason


SETUP_SNAKE = {
    "setup": {
        "model": "models/gemini-3.8-live",
        "generation_config": {"response_modalities": ["AUDIO"]},
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "input_audio_transcription": {},
        "realtime_input_config": {"automatic_activity_detection": {"silence_duration_ms": 200}},
    }
}


async def test_snake_case_keys_at_every_level_are_understood(start_emulator):
    emu = await start_emulator(Scenario(**FAST, user_says=[ScriptedTurn(says="Hey.", reply="Ok.")]))
    async with connect(emu, query=f"?key={emu.api_key}") as ws:
        await ws.send(json.dumps(SETUP_SNAKE))
        assert await ws.recv() == b'{"setupComplete": {}}'
        audio = base64.b64encode(speech(0.3) + silence(0.25)).decode()
        await ws.send(
            json.dumps(
                {"realtime_input": {"media_chunks": [{"mime_type": "audio/pcm", "data": audio}]}}
            )
        )
        messages = await until_turn_complete(ws)
    assert messages[0] == {
        "serverContent": {"inputTranscription": {"text": "Hey.", "finished": True}}
    }
    usage = messages[-1]["usageMetadata"]
    # System 3 + 0.5 s (0.3 speech + 0.2 silence from setup) = 12.5 → 13 audio tokens.
    assert usage["promptTokenCount"] == 16
    assert usage["promptTokensDetails"] == [
        {"modality": "TEXT", "tokenCount": 3},
        {"modality": "AUDIO", "tokenCount": 13},
    ]


async def test_camel_case_top_level_keys_and_binary_client_frames_are_accepted(emu):
    async with connect(emu, headers={"x-goog-api-key": emu.api_key}) as ws:
        await ws.send(json.dumps({"setup": {"model": "gemini-3.8-live"}}).encode())
        await recv_json(ws)
        turn = {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": "Hi"}]}],
                "turnComplete": True,
            }
        }
        await ws.send(json.dumps(turn).encode())
        messages = await until_turn_complete(ws)
    assert messages[-2] == {"serverContent": {"generationComplete": True}}
    assert [e.kind for e in emu.wire.select(direction="in")] == ["binary", "binary"]


def _pcm_with_both_alphabets_differing() -> bytes:
    # Loud samples whose base64 contains '+' and '/' (standard) vs '-' and '_' (URL-safe).
    pcm = speech(0.3) + bytes([0xFB, 0xEF, 0xFF, 0xFF]) * 50 + silence(0.4)
    assert {"+", "/"} & set(base64.b64encode(pcm).decode())
    return pcm


@pytest.mark.parametrize("alphabet", ["standard", "urlsafe", "urlsafe-unpadded"])
async def test_both_base64_alphabets_decode_to_the_same_audio(start_emulator, alphabet):
    emu = await start_emulator(Scenario(**FAST, user_says=[ScriptedTurn(says="b64", reply="Ok.")]))
    pcm = _pcm_with_both_alphabets_differing()
    if alphabet == "standard":
        data = base64.b64encode(pcm).decode()
    else:
        data = base64.urlsafe_b64encode(pcm).decode()
        if alphabet == "urlsafe-unpadded":
            data = data.rstrip("=")
    async with connect(emu, query=f"?key={emu.api_key}") as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
        await ws.recv()
        await ws.send(json.dumps({"realtimeInput": {"audio": {"data": data}}}))
        messages = await until_turn_complete(ws)
    # The last loud sample is in the 10 ms frame ending at sample 4,960; 300 ms of silence later
    # (sample 9,760) the turn ends: ceil(9,760 * 25 / 16,000) = 16 tokens.
    assert messages[-1]["usageMetadata"]["promptTokenCount"] == 16


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"client_content": {"turns": [], "turn_complete": True}}, 1007),
        ("not json at all", 1007),
        (
            {
                "setup": {
                    "model": "models/gemini-3.8-live",
                    "generationConfig": {"responseModalities": ["AUDIO", "TEXT"]},
                }
            },
            1007,
        ),
    ],
)
async def test_a_first_message_that_is_not_a_valid_setup_is_closed_with_1007(emu, first, code):
    async with connect(emu, query=f"?key={emu.api_key}") as ws:
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        assert (await close_code(ws))[0] == code


@pytest.mark.parametrize(
    "message",
    [
        {"setup": {"model": "models/gemini-3.8-live"}},
        {"realtimeInput": {"activityStart": {}}},  # automatic detection is on
        {"realtimeInput": {"audio": {"data": "!!not base64!!"}}},
        {"somethingElse": {}},
    ],
)
async def test_protocol_violations_after_setup_are_closed_with_1007(emu, message):
    async with connect(emu, query=f"?key={emu.api_key}") as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
        await ws.recv()
        await ws.send(json.dumps(message))
        code, reason = await close_code(ws)
    assert code == 1007 and reason


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        ("", {}, 1008),
        ("?key=wrong", {}, 1008),
        ("", {"x-goog-api-key": "wrong"}, 1008),
        ("?key={key}", {}, None),
        ("", {"x-goog-api-key": "{key}"}, None),
    ],
)
async def test_the_api_key_is_read_from_the_header_or_the_query(emu, query, headers, expected):
    query = query.format(key=emu.api_key)
    headers = {k: v.format(key=emu.api_key) for k, v in headers.items()}
    async with connect(emu, query=query, headers=headers) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
        if expected is None:
            assert json.loads(await ws.recv()) == {"setupComplete": {}}
        else:
            assert (await close_code(ws))[0] == expected


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
async def test_every_api_version_path_serves_live(emu, version):
    async with connect(emu, query=f"?key={emu.api_key}", version=version) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
        assert json.loads(await ws.recv()) == {"setupComplete": {}}


async def test_an_unknown_live_path_is_refused_at_the_handshake(emu):
    with pytest.raises(InvalidStatus):
        async with connect(emu, version="v2"):
            pass
