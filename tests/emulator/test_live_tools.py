"""Function calling over the real SDK: blocking and non-blocking calls, each scheduling, and
barge-in (tool call cancellation, interrupted, no generationComplete)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google import genai
from google.genai import types
from voicetrace.emulator import Scenario, ScriptedTurn

from tests.emulator.helpers import (
    live_config,
    one_turn,
    send_audio,
    server_content_flags,
    silence,
    speech,
    text_turn,
    transcript,
    until,
)

ASK_BOTH = "Find a coffee place nearby and give me walking directions to the harbour"
PLACES = {"places": [{"name": "Riverside Cafe"}, {"name": "Copper Kettle"}]}
PLACES_JSON = '{"places":[{"name":"Riverside Cafe"},{"name":"Copper Kettle"}]}'  # 64 → 16 tokens
ROUTE = {"distance_m": 850}
ROUTE_JSON = '{"distance_m":850}'  # 18 characters → 5 tokens


def tools(behavior: str | None = None) -> list[types.Tool]:
    extra: dict[str, Any] = {"behavior": behavior} if behavior else {}
    return [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(
                    name="search_nearby",
                    description="Find places",
                    parameters_json_schema={"type": "object"},
                    **extra,
                ),
                types.FunctionDeclaration(
                    name="navigate_to_location",
                    description="Directions",
                    parameters_json_schema={"type": "object"},
                    **extra,
                ),
            ]
        )
    ]


def results_for(calls: list[types.FunctionCall], scheduling: str | None = None):
    canned = {"search_nearby": PLACES, "navigate_to_location": ROUTE}
    return [
        types.FunctionResponse(id=c.id, name=c.name, response=canned[c.name], scheduling=scheduling)
        for c in calls
    ]


@pytest.mark.parametrize(
    ("model", "behavior"),
    [("gemini-3.1-flash-live-preview", None), ("gemini-3.8-live", "BLOCKING")],
)
async def test_blocking_calls_hold_the_turn_until_every_response_arrived(
    start_emulator, model, behavior
):
    emu = await start_emulator()
    config = live_config(tools=tools(behavior), system_instruction="Be brief.")
    async with genai.Client().aio.live.connect(model=model, config=config) as session:
        await session.send_client_content(turns=text_turn(ASK_BOTH))
        messages: list[types.LiveServerMessage] = []
        async for message in session.receive():
            messages.append(message)
            if message.tool_call:
                calls = message.tool_call.function_calls
                await asyncio.sleep(0.05)
                # Nothing closes the turn while the calls are pending.
                assert server_content_flags(messages) == ["toolCall"]
                assert emu.wire.select(direction="out", key="serverContent") == []
                await session.send_tool_response(function_responses=results_for(calls)[:1])
                await asyncio.sleep(0.05)
                assert emu.wire.select(direction="out", key="serverContent") == []
                await session.send_tool_response(function_responses=results_for(calls)[1:])

    assert [(c.name, c.args) for c in calls] == [
        ("search_nearby", {"query": "coffee", "radius_m": 1000}),
        ("navigate_to_location", {"destination": "harbour", "mode": "walking"}),
    ]
    assert len({c.id for c in calls}) == 2 and all(c.id for c in calls)
    assert server_content_flags(messages) == ["toolCall", "generation_complete", "turn_complete"]
    said = transcript(messages)
    assert "Riverside Cafe, Copper Kettle" in said and "850" in said
    usage = messages[-1].usage_metadata
    assert usage.tool_use_prompt_token_count == 16 + 5
    # System 3 + two declarations (8 + 4 + 3, 8 + 5 + 3) + the request (72 chars → 18).
    assert usage.prompt_token_count == 3 + 15 + 16 + 18
    assert usage.total_token_count == (usage.prompt_token_count + usage.response_token_count + 21)


async def test_non_blocking_calls_complete_the_turn_at_once_and_results_speak_when_idle(
    start_emulator,
):
    emu = await start_emulator()
    config = live_config(tools=tools())
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=text_turn(ASK_BOTH))
        first = await one_turn(session)
        (call_message,) = [m for m in first if m.tool_call]
        calls = call_message.tool_call.function_calls
        # WHEN_IDLE is the default: one result turn once both calls are answered.
        await session.send_tool_response(function_responses=results_for(calls)[:1])
        await asyncio.sleep(0.05)
        assert len(emu.wire.select(direction="out", key="usageMetadata")) == 1
        await session.send_tool_response(function_responses=results_for(calls)[1:])
        second = await one_turn(session)

    assert server_content_flags(first) == ["toolCall", "generation_complete", "turn_complete"]
    assert transcript(first) == "Let me look that up."
    assert first[-1].usage_metadata.tool_use_prompt_token_count is None
    assert server_content_flags(second) == ["generation_complete", "turn_complete"]
    assert "Riverside Cafe" in transcript(second)
    usage = second[-1].usage_metadata
    assert usage.tool_use_prompt_token_count == 21
    previous = first[-1].usage_metadata
    assert usage.prompt_token_count == previous.prompt_token_count + previous.response_token_count


async def test_when_idle_result_waits_for_the_ongoing_answer_to_finish(start_emulator):
    emu = await start_emulator(Scenario(speed=40.0))
    config = live_config(tools=tools())
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=text_turn("Find coffee"))
        first = await one_turn(session)
        calls = next(m for m in first if m.tool_call).tool_call.function_calls
        await session.send_client_content(turns=text_turn("Tell me a long story meanwhile"))
        await until(lambda: len(emu.wire.select(direction="out", key="serverContent")) > 20)
        await session.send_tool_response(function_responses=results_for(calls, "WHEN_IDLE"))
        story = await one_turn(session)
        result = await one_turn(session)
    assert server_content_flags(story) == ["generation_complete", "turn_complete"]
    assert "Once upon a time" in transcript(story)
    assert "Riverside Cafe" in transcript(result)


async def test_interrupt_result_cuts_the_ongoing_answer_and_is_spoken_now(start_emulator):
    emu = await start_emulator(Scenario(speed=40.0))
    config = live_config(tools=tools())
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=text_turn("Find coffee"))
        first = await one_turn(session)
        calls = next(m for m in first if m.tool_call).tool_call.function_calls
        await session.send_client_content(turns=text_turn("Tell me a long story meanwhile"))
        await until(lambda: len(emu.wire.select(direction="out", key="serverContent")) > 20)
        await session.send_tool_response(function_responses=results_for(calls, "INTERRUPT"))
        story = await one_turn(session)
        result = await one_turn(session)
    assert server_content_flags(story) == ["interrupted", "turn_complete"]
    assert "Riverside Cafe" in transcript(result)
    assert result[-1].usage_metadata.tool_use_prompt_token_count == 16


async def test_silent_result_only_adds_context(start_emulator):
    emu = await start_emulator()
    config = live_config(tools=tools())
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=text_turn("Find coffee"))
        first = await one_turn(session)
        calls = next(m for m in first if m.tool_call).tool_call.function_calls
        await session.send_tool_response(function_responses=results_for(calls, "SILENT"))
        await asyncio.sleep(0.1)
        assert len(emu.wire.select(direction="out", key="usageMetadata")) == 1  # no new turn
        await session.send_client_content(turns=text_turn("Ok"))
        second = await one_turn(session)
    before = first[-1].usage_metadata
    after = second[-1].usage_metadata
    # The context now holds the silent result (16) and "Ok" (1) on top of turn 1.
    assert after.prompt_token_count == (
        before.prompt_token_count + before.response_token_count + 16 + 1
    )
    assert after.tool_use_prompt_token_count is None


async def test_barge_in_by_client_content_cancels_pending_blocking_calls(start_emulator):
    await start_emulator()
    config = live_config(tools=tools())
    async with genai.Client().aio.live.connect(
        model="gemini-3.1-flash-live-preview", config=config
    ) as session:
        await session.send_client_content(turns=text_turn(ASK_BOTH))
        interrupted: list[types.LiveServerMessage] = []
        async for message in session.receive():
            interrupted.append(message)
            if message.tool_call:
                ids = [c.id for c in message.tool_call.function_calls]
                await session.send_client_content(turns=text_turn("Never mind, hello"))
        answered = await one_turn(session)
        # A late response to a cancelled call is ignored, as the real service does.
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=ids[0], name="x", response={})]
        )
        await session.send_client_content(turns=text_turn("Still there?"))
        third = await one_turn(session)

    assert server_content_flags(interrupted) == [
        "toolCall",
        "toolCallCancellation",
        "interrupted",
        "turn_complete",
    ]
    cancellation = next(m for m in interrupted if m.tool_call_cancellation)
    assert cancellation.tool_call_cancellation.ids == ids
    assert interrupted[-1].usage_metadata is not None
    assert server_content_flags(answered) == ["generation_complete", "turn_complete"]
    assert "Never mind, hello" in transcript(answered)
    assert "Still there?" in transcript(third)


async def test_barge_in_by_speech_interrupts_audio_and_bills_only_what_was_sent(start_emulator):
    await start_emulator(
        Scenario(speed=20.0, user_says=["Tell me a long story about the lighthouse.", "Stop."])
    )
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=live_config()) as s:
        await send_audio(s, speech(0.5) + silence(0.3))
        first: list[types.LiveServerMessage] = []
        async for message in s.receive():
            first.append(message)
            if message.data and sum(1 for m in first if m.data) == 3:
                await send_audio(s, speech(0.4) + silence(0.3))  # the user talks over it
        second = await one_turn(s)

    assert server_content_flags(first)[-2:] == ["interrupted", "turn_complete"]
    assert "generation_complete" not in server_content_flags(first)
    sent_samples = sum(len(m.data) for m in first if m.data) // 2
    assert sent_samples < 12 * 24_000  # far less than the whole story
    usage = first[-1].usage_metadata
    assert usage.response_token_count == -(-sent_samples * 25 // 24_000)
    assert transcript(second, "input") == "Stop."
    assert server_content_flags(second) == ["generation_complete", "turn_complete"]
    # Turn 2 bills 0.7 s of audio (0.4 s speech + 0.3 s silence) on top of turn 1's context.
    assert second[-1].usage_metadata.prompt_token_count == (
        usage.prompt_token_count + usage.response_token_count + 18
    )


async def test_activity_start_barges_in_when_detection_is_manual(start_emulator):
    await start_emulator(Scenario(speed=20.0, user_says=[ScriptedTurn(says="Next.", reply="Ok.")]))
    config = live_config(
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        )
    )
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=config) as s:
        await s.send_client_content(turns=text_turn("Tell me a long story"))
        first: list[types.LiveServerMessage] = []
        async for message in s.receive():
            first.append(message)
            if message.data and sum(1 for m in first if m.data) == 2:
                await s.send_realtime_input(activity_start=types.ActivityStart())
        await send_audio(s, speech(0.2))
        await s.send_realtime_input(activity_end=types.ActivityEnd())
        second = await one_turn(s)
    assert server_content_flags(first)[-2:] == ["interrupted", "turn_complete"]
    assert transcript(second, "input") == "Next." and transcript(second) == "Ok."
