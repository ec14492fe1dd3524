"""User turns the way voice frameworks send them: Pipecat and LiveKit Agents send the user's text
as `client_content(turns=[...], turn_complete=False)`, then a bare `client_content(turn_complete=
True)`. Gemini accumulates the parts until `turn_complete`; so must the emulator."""

from __future__ import annotations

from google import genai
from google.genai import types
from voicetrace.emulator import Scenario

from tests.emulator.helpers import FAST, live_config, one_turn, server_content_flags, transcript
from tests.emulator.test_live_tools import PLACES, tools

MODEL = "gemini-3.8-live"


def user(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def test_a_pipecat_style_text_turn_gets_a_real_answer_and_a_tool_call(start_emulator):
    emu = await start_emulator(Scenario(**FAST))
    async with genai.Client().aio.live.connect(
        model=MODEL, config=live_config(tools=tools())
    ) as session:
        await session.send_client_content(
            turns=[user("Find a coffee place near me")], turn_complete=False
        )
        await session.send_client_content(turn_complete=True)
        first = await one_turn(session)
        (call,) = next(m for m in first if m.tool_call).tool_call.function_calls
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response=PLACES)]
        )
        spoken = await one_turn(session)

    # Exactly what the frameworks send: the text without turnComplete, then a bare turnComplete.
    sent = [e.message for e in emu.wire.select(direction="in", key="client_content")]
    assert sent[0]["client_content"].get("turnComplete", False) is False
    assert sent[1] == {"client_content": {"turnComplete": True}}
    assert call.name == "search_nearby" and call.args["query"] == "coffee"
    assert "didn't catch" not in transcript(first)
    assert server_content_flags(first)[0] == "toolCall"
    assert "Riverside Cafe" in transcript(spoken)
    # The text is billed once, with the turn it belongs to ("Find a coffee place near me" → 7).
    declared = first[-1].usage_metadata.prompt_token_count - 7
    assert declared > 0 and spoken[-1].usage_metadata is not None


async def test_parts_sent_in_several_messages_are_answered_together(start_emulator):
    await start_emulator(Scenario(**FAST))
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(turns=[user("My name is Ada.")], turn_complete=False)
        await session.send_client_content(turns=[user("Say hello.")], turn_complete=False)
        await session.send_client_content(turn_complete=True)
        messages = await one_turn(session)
    said = transcript(messages)
    assert "Ada" in said and "hello" in said.lower()
    assert server_content_flags(messages) == ["generation_complete", "turn_complete"]


async def test_history_up_to_a_model_turn_is_context_not_the_question(start_emulator):
    await start_emulator(Scenario(**FAST))
    async with genai.Client().aio.live.connect(
        model=MODEL, config=live_config(tools=tools())
    ) as session:
        await session.send_client_content(
            turns=[
                user("Find a coffee place near me"),
                types.Content(role="model", parts=[types.Part(text="Riverside Cafe is close.")]),
                user("Thank you, that is all."),
            ],
            turn_complete=False,
        )
        await session.send_client_content(turn_complete=True)
        messages = await one_turn(session)
    # The earlier request was already answered in the history: no tool call for it now.
    assert not any(m.tool_call for m in messages)
    assert "Thank you" in transcript(messages)


async def test_pipecats_blank_realtime_text_nudge_neither_interrupts_nor_adds_a_turn(
    start_emulator,
):
    """Pipecat on Gemini 3.x follows `client_content(turn_complete=True)` with
    `realtime_input(text=" ")` so that the model answers: one answer, not a barge-in."""
    emu = await start_emulator(Scenario(**FAST))
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(turns=[user("Say hello.")], turn_complete=True)
        await session.send_realtime_input(text=" ")
        messages = await one_turn(session)
        await session.send_realtime_input(text="And now?")  # a real text is a turn again
        again = await one_turn(session)
    assert "interrupted" not in server_content_flags(messages)
    assert "hello" in transcript(messages).lower()
    assert transcript(again)
    completes = [e for e in emu.wire.select(direction="out") if "turnComplete" in str(e.message)]
    assert len(completes) == 2
