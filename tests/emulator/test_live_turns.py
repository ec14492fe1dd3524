"""Turn shapes over the real google-genai SDK: text, server VAD, audioStreamEnd, manual activity,
realtime text, TEXT modality; with exact usage numbers from the documented token rules."""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import types
from voicetrace.emulator import Scenario, ScriptedTurn

from tests.emulator.helpers import (
    FAST,
    live_config,
    modalities,
    one_turn,
    send_audio,
    silence,
    speech,
    transcript,
    until,
)

MODEL = "gemini-3.8-live"


async def test_text_turn_streams_audio_with_transcript_then_usage_in_the_turn_complete_message(
    start_emulator,
):
    await start_emulator(Scenario(**FAST, turns={1: ScriptedTurn(reply="Okay, noted.")}))
    config = live_config(system_instruction="Be brief.")
    async with genai.Client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Hello there")])
        )
        messages = await one_turn(session)

    # "Okay, noted." is 12 characters → 720 ms → 17,280 samples at 24 kHz → ceil(18.0) = 18.
    assert transcript(messages) == "Okay, noted."
    assert sum(len(m.data) for m in messages if m.data) == 2 * 17_280
    assert {
        p.inline_data.mime_type
        for m in messages
        if m.data
        for p in m.server_content.model_turn.parts
    } == {"audio/pcm;rate=24000"}
    *_, generation_complete, last = messages
    assert generation_complete.server_content.generation_complete
    assert last.server_content.turn_complete and last.usage_metadata is not None
    usage = last.usage_metadata
    # System "Be brief." (9 chars → 3) + "Hello there" (11 chars → 3).
    assert usage.prompt_token_count == 6
    assert modalities(usage.prompt_tokens_details) == {"TEXT": 6}
    assert usage.response_token_count == 18
    assert modalities(usage.response_tokens_details) == {"AUDIO": 18}
    assert usage.total_token_count == 24
    assert usage.tool_use_prompt_token_count is None and usage.thoughts_token_count is None


async def test_server_frames_are_binary_camel_case_json_and_the_wire_log_records_both_ways(
    start_emulator,
):
    emu = await start_emulator()
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Hi")])
        )
        await one_turn(session)
    incoming = emu.wire.select(direction="in")
    outgoing = [e for e in emu.wire.select(direction="out") if e.kind != "close"]
    assert list(incoming[0].message) == ["setup"]
    assert incoming[0].message["setup"]["model"] == f"models/{MODEL}"
    assert "client_content" in incoming[1].message  # what the SDK really sends
    assert outgoing[0].message == {"setupComplete": {}}
    assert {e.kind for e in outgoing} == {"binary"}
    assert all(e.size > 0 and e.connection == 1 for e in emu.wire)
    keys = {k for e in outgoing for k in e.message}
    assert keys <= {"setupComplete", "serverContent", "usageMetadata"}
    (complete,) = [e for e in outgoing if e.message.get("serverContent", {}).get("turnComplete")]
    assert "usageMetadata" in complete.message
    assert emu.connections == 1


async def test_spoken_turns_end_by_server_vad_in_audio_time_and_bill_the_growing_context(
    start_emulator,
):
    emu = await start_emulator(
        Scenario(
            **FAST,
            user_says=[
                ScriptedTurn(says="Tell me about the old town.", reply="Sure."),
                ScriptedTurn(says="Thanks!", reply="Fine."),
            ],
        )
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, speech(1.0) + silence(0.5))
        first = await one_turn(session)
        await send_audio(session, speech(0.5) + silence(0.5))
        second = await one_turn(session)

    assert transcript(first, "input") == "Tell me about the old town."
    (heard,) = [m for m in first if m.server_content and m.server_content.input_transcription]
    assert heard.server_content.input_transcription.finished is True
    assert first.index(heard) == 0  # what the user said comes before the model's answer
    assert transcript(second, "input") == "Thanks!"
    # Turn 1: speech ends 300 ms (default silence) into the silence: 1.3 s = 20,800 samples →
    # ceil(32.5) = 33 audio tokens. "Sure." = 300 ms of reply → ceil(7.5) = 8.
    u1 = first[-1].usage_metadata
    assert (u1.prompt_token_count, u1.response_token_count) == (33, 8)
    assert modalities(u1.prompt_tokens_details) == {"AUDIO": 33}
    # Turn 2: the 0.2 s left over from turn 1 + 0.5 s speech + 0.3 s silence = 1.0 s → 25;
    # the context re-billed: 33 + 8 from turn 1.
    u2 = second[-1].usage_metadata
    assert (u2.prompt_token_count, u2.response_token_count) == (33 + 8 + 25, 8)
    assert modalities(u2.prompt_tokens_details) == {"AUDIO": 66}
    assert u2.total_token_count == 74
    assert emu.wire.select(direction="out", key="sessionResumptionUpdate") == []


async def test_silence_duration_from_setup_overrides_the_scenario_default(start_emulator):
    await start_emulator(Scenario(**FAST, user_says=[ScriptedTurn(says="x", reply="Ok.")]))
    config = live_config(
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(silence_duration_ms=500)
        )
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=config) as session:
        await send_audio(session, speech(1.0) + silence(0.6))
        messages = await one_turn(session)
    # 1.0 s speech + 0.5 s silence = 24,000 samples → ceil(37.5) = 38.
    assert messages[-1].usage_metadata.prompt_token_count == 38


async def test_audio_stream_end_closes_an_utterance_that_has_no_trailing_silence(start_emulator):
    emu = await start_emulator(Scenario(**FAST, user_says=[ScriptedTurn(says="Hi.", reply="Yo.")]))
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, speech(0.6))
        await until(lambda: len(emu.wire.select(direction="in", key="realtime_input")) == 6)
        await asyncio.sleep(0.05)
        assert emu.wire.select(direction="out", key="serverContent") == []  # still listening
        await session.send_realtime_input(audio_stream_end=True)
        messages = await one_turn(session)
    assert transcript(messages, "input") == "Hi."
    # 0.6 s = 9,600 samples → 15 tokens.
    assert messages[-1].usage_metadata.prompt_token_count == 15


async def test_manual_activity_bounds_the_turn_and_audio_outside_it_is_ignored(start_emulator):
    await start_emulator(Scenario(**FAST, user_says=[ScriptedTurn(says="Manual.", reply="Ok.")]))
    config = live_config(
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        )
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=config) as session:
        await send_audio(session, speech(0.3))  # before activityStart: not part of any turn
        await session.send_realtime_input(activity_start=types.ActivityStart())
        # Long silence inside the activity does not end it: only activityEnd does.
        await send_audio(session, speech(0.4) + silence(0.8))
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        messages = await one_turn(session)
    assert transcript(messages, "input") == "Manual."
    # 0.4 + 0.8 s = 19,200 samples → 30 tokens.
    assert messages[-1].usage_metadata.prompt_token_count == 30


async def test_realtime_text_is_a_user_turn_answered_from_what_was_typed(emu, client):
    async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_realtime_input(text="Hello from the keyboard")
        messages = await one_turn(session)
    said = transcript(messages)
    assert said.startswith("You said: 'Hello from the keyboard'.")
    assert transcript(messages, "input") == ""  # typed, not heard
    usage = messages[-1].usage_metadata
    assert usage.prompt_token_count == 6  # 23 characters
    assert usage.response_token_count == -(-len(said) * 60 * 24 * 25 // 24_000)


async def test_client_content_without_turn_complete_is_context_billed_with_the_next_turn(
    start_emulator,
):
    await start_emulator(Scenario(**FAST, turns={1: ScriptedTurn(reply="Ok.")}))
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(
            turns=[
                types.Content(role="user", parts=[types.Part(text="My name is Ada.")]),
                types.Content(role="model", parts=[types.Part(text="Hello Ada.")]),
            ],
            turn_complete=False,
        )
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Who am I?")])
        )
        messages = await one_turn(session)
    # 15 chars → 4, 10 → 3, 9 → 3.
    assert messages[-1].usage_metadata.prompt_token_count == 10


async def test_text_modality_on_the_half_cascade_model_streams_text_parts(emu, client):
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    async with client.aio.live.connect(model="gemini-2.0-flash-live-001", config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Ping")])
        )
        messages = await one_turn(session)
    text = "".join(m.text for m in messages if m.text)
    assert text == "You said: 'Ping'. I can find places nearby and give you directions."
    assert not any(m.data for m in messages)
    usage = messages[-1].usage_metadata
    assert modalities(usage.response_tokens_details) == {"TEXT": usage.response_token_count}
    assert usage.response_token_count >= -(-len(text) // 4)


async def test_scripted_thoughts_are_reported_and_added_to_the_total(start_emulator):
    await start_emulator(Scenario(**FAST, turns={1: ScriptedTurn(reply="Hm.", thoughts_tokens=42)}))
    async with genai.Client().aio.live.connect(
        model="gemini-3.8-live-extended-thinking", config=live_config()
    ) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Think")])
        )
        messages = await one_turn(session)
    usage = messages[-1].usage_metadata
    # "Think" → 2, "Hm." = 180 ms → ceil(4.5) = 5.
    assert (usage.prompt_token_count, usage.response_token_count) == (2, 5)
    assert usage.thoughts_token_count == 42
    assert usage.total_token_count == 2 + 5 + 42


@pytest.mark.parametrize("realtime", [False, True])
async def test_pacing_is_fast_by_default_and_real_time_on_request(start_emulator, realtime):
    await start_emulator(
        Scenario(realtime=realtime, chunk_ms=20, turns={1: ScriptedTurn(reply="0123456789")})
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Go")])
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        messages = await one_turn(session)
        elapsed = loop.time() - started
    chunks = [m for m in messages if m.data]
    assert len(chunks) == 30  # 600 ms of reply in 20 ms chunks
    if realtime:
        assert elapsed >= 0.55
    else:
        assert elapsed < 0.3
