"""The fast frame decoder is pinned to the installed SDK: for every message shape the emulator
and the SDK's own types produce, `decode_frame` gives exactly the events that mapping the SDK's
own parsed message gives (`AsyncSession.receive()`), in both base64 alphabets."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from google import genai
from google.genai import types
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.voice import events as ev
from voicetrace.service.voice import gemini_frames
from voicetrace.service.voice.gemini_events import function_declaration
from voicetrace.service.voice.tools import FunctionSpec
from voicetrace.telemetry.instrumentation.genai_mapping import audio_only, map_message

from tests.emulator.helpers import live_config, send_audio, silence, speech, until

MODEL = "gemini-3.8-live"
NEARBY = FunctionSpec(
    "search_nearby",
    "Find places near the user.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


class Reader:
    """Every message the SDK's own `receive()` yields, across turns, in order."""

    def __init__(self, session) -> None:
        self.received: list[types.LiveServerMessage] = []
        self._task = asyncio.ensure_future(self._read(session))

    async def _read(self, session) -> None:
        while True:
            async for message in session.receive():
                self.received.append(message)

    async def until(self, predicate, timeout: float = 10.0) -> None:
        await until(lambda: any(predicate(m) for m in self.received), timeout)

    async def stop(self, count: int) -> list[types.LiveServerMessage]:
        await until(lambda: len(self.received) >= count)
        self._task.cancel()
        return self.received


def _sent_frames(emu: Emulator) -> list[str]:
    """What the emulator sent after setup (the SDK consumes `setupComplete` in connect)."""
    sent = [e.message for e in emu.wire.select(direction="out") if e.message]
    return [json.dumps(m) for m in sent if "setupComplete" not in m]


def _assert_same_events(frames: list[str], received: list[types.LiveServerMessage]) -> None:
    assert len(frames) == len(received)
    for raw, message in zip(frames, received, strict=True):
        assert gemini_frames.decode_frame(raw) == list(map_message(message)), raw[:200]
        _assert_audio_only_agrees(message)
    assert any(audio_only(m) is not None for m in received), "no audio chunk took the shortcut"


def _assert_audio_only_agrees(message: types.LiveServerMessage) -> None:
    """The instrumentor's shortcut says "one audio chunk, nothing else" only when the full
    mapping yields exactly that chunk."""
    shortcut = audio_only(message)
    if shortcut is not None:
        *transcript, audio = map_message(message)
        assert isinstance(audio, ev.AudioOut)
        assert shortcut[:2] == (len(audio.data), audio.sample_rate)
        if shortcut[2]:
            assert transcript == [ev.OutputTranscript(shortcut[2], transcript[0].finished)]
        else:
            assert transcript == []


def _turns_done(reader: Reader) -> int:
    return sum(1 for m in reader.received if m.server_content and m.server_content.turn_complete)


def _text(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def test_every_emulator_message_decodes_as_the_sdk_parses_it(start_emulator) -> None:
    emu = await start_emulator(
        Scenario(speed=500.0, user_says=["Tell me about the old town."], go_away_after_turn=3)
    )
    config = live_config(
        tools=[types.Tool(function_declarations=[function_declaration(NEARBY)])],
        session_resumption=types.SessionResumptionConfig(),
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=config) as session:
        reader = Reader(session)
        await session.send_client_content(turns=_text("Hello there"))
        await until(lambda: _turns_done(reader) == 1)
        await send_audio(session, speech(0.6) + silence(0.8))  # a spoken turn, ended by VAD
        await until(lambda: _turns_done(reader) == 2)
        await session.send_client_content(turns=_text("Search nearby for coffee"))
        await reader.until(lambda m: m.tool_call is not None)
        (call,) = next(m for m in reader.received if m.tool_call).tool_call.function_calls
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={})]
        )
        await reader.until(lambda m: m.go_away is not None)
        frames = _sent_frames(emu)
        received = await reader.stop(len(frames))
    kinds = {type(e).__name__ for raw in frames for e in gemini_frames.decode_frame(raw)}
    # The shapes this covers (so a scenario change cannot quietly shrink the test):
    covered = {"AudioOut", "InputTranscript", "OutputTranscript", "ToolCall", "UsageSnapshot"}
    covered |= {"TurnComplete", "GenerationComplete", "GoAway", "ResumptionHandle"}
    assert covered <= kinds
    _assert_same_events(frames, received[: len(frames)])


async def test_usage_sent_in_its_own_message_decodes_as_the_sdk_parses_it(start_emulator) -> None:
    emu = await start_emulator(Scenario(speed=500.0, usage="after_turn_complete"))
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        reader = Reader(session)
        await session.send_client_content(turns=_text("Hello there"))
        await reader.until(lambda m: m.usage_metadata is not None)
        frames = _sent_frames(emu)
        received = await reader.stop(len(frames))
    assert received[-1].server_content is None  # usage came on its own, after turnComplete
    _assert_same_events(frames, received)


SDK_SHAPES = [
    types.LiveServerMessage(server_content=types.LiveServerContent(interrupted=True)),
    types.LiveServerMessage(
        tool_call_cancellation=types.LiveServerToolCallCancellation(ids=["a", "b"])
    ),
    types.LiveServerMessage(
        server_content=types.LiveServerContent(
            model_turn=types.Content(
                role="model",
                parts=[
                    types.Part(
                        inline_data=types.Blob(
                            data=b"\x01\x02" * 480, mime_type="audio/pcm;rate=24000"
                        )
                    )
                ],
            ),
            output_transcription=types.Transcription(text="Hi"),
        )
    ),
    types.LiveServerMessage(
        server_content=types.LiveServerContent(
            model_turn=types.Content(
                parts=[types.Part(inline_data=types.Blob(data=b"\xff\xfe" * 240))]
            )
        )
    ),
    types.LiveServerMessage(
        server_content=types.LiveServerContent(
            model_turn=types.Content(parts=[types.Part(inline_data=types.Blob(data=b"\x05" * 96))]),
            output_transcription=types.Transcription(text="the end.", finished=True),
        )
    ),
    types.LiveServerMessage(
        server_content=types.LiveServerContent(
            model_turn=types.Content(parts=[types.Part(inline_data=types.Blob(data=b"\x05" * 96))]),
            output_transcription=types.Transcription(text=""),
        )
    ),
    types.LiveServerMessage(
        server_content=types.LiveServerContent(
            model_turn=types.Content(parts=[types.Part(text="thinking", thought=True)])
        )
    ),
    types.LiveServerMessage(go_away=types.LiveServerGoAway(time_left="2.5s")),
    types.LiveServerMessage(
        session_resumption_update=types.LiveServerSessionResumptionUpdate(
            new_handle="h1", resumable=True
        )
    ),
]


@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
@pytest.mark.parametrize(
    "message", SDK_SHAPES, ids=lambda m: ",".join(sorted(m.model_dump(exclude_none=True)))
)
def test_sdk_built_messages_decode_as_the_sdk_parses_them(message, alphabet) -> None:
    wire = message.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw = json.dumps(wire)
    if alphabet == "urlsafe":
        raw = raw.replace("+", "-").replace("/", "_")  # only base64 fields contain these here
    parsed = gemini_frames.sdk_message(json.loads(raw))
    assert (
        gemini_frames.decode_frame(raw) == list(map_message(parsed)) == list(map_message(message))
    )


@pytest.mark.parametrize(
    "message", SDK_SHAPES, ids=lambda m: ",".join(sorted(m.model_dump(exclude_none=True)))
)
def test_the_audio_only_shortcut_agrees_with_the_full_mapping(message) -> None:
    wire = message.model_dump(mode="json", by_alias=True, exclude_none=True)
    parsed = gemini_frames.sdk_message(wire)
    _assert_audio_only_agrees(parsed)
    _assert_audio_only_agrees(message)


def test_an_audio_chunk_takes_the_fast_path() -> None:
    pcm = bytes(range(256)) * 8
    raw = json.dumps(
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
            "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}]}}}
    )  # fmt: skip
    assert gemini_frames._audio_chunk(json.loads(raw)) == [ev.AudioOut(pcm, 24_000)]
    # and the instrumentor's shortcut, on the message as the SDK parses it
    assert audio_only(gemini_frames.sdk_message(json.loads(raw))) == (len(pcm), 24_000, None)


def test_frames_that_are_not_messages_are_refused_like_the_sdk_refuses_them() -> None:
    with pytest.raises(ValueError, match="Failed to parse"):
        gemini_frames.decode_frame(b"not json")
    with pytest.raises(genai.errors.APIError):
        gemini_frames.decode_frame(json.dumps({"code": 500, "error": "boom"}))
