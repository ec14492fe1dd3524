"""Where `usageMetadata` goes, and connection timing (goAway, resumption updates), as scenario
options: proven on the wire order the real google-genai SDK receives."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types
from voicetrace.emulator import Emulator, Scenario, ScriptedTurn

from tests.emulator.helpers import FAST, live_config, one_turn, text_turn

MODEL = "gemini-3.8-live"


def _turn_complete(message: dict | None) -> bool:
    return bool((message or {}).get("serverContent", {}).get("turnComplete"))


def outgoing(emu: Emulator) -> list[dict]:
    """The server's messages in the order they were sent (close frames left out)."""
    return [e.message for e in emu.wire.select(direction="out") if e.message is not None]


async def next_messages_until_usage(session: genai.live.AsyncSession) -> list:
    """Messages that follow a turn, up to the first one carrying usage (the next turn's
    `receive()` yields them: the SDK's turn ended at `turnComplete`)."""
    seen = []
    async for message in session.receive():
        seen.append(message)
        if message.usage_metadata is not None:
            break
    return seen


async def test_usage_after_turn_complete_arrives_in_its_own_message_right_after_it(
    start_emulator,
):
    emu = await start_emulator(
        Scenario(**FAST, usage="after_turn_complete", turns={1: ScriptedTurn(reply="Okay.")})
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(turns=text_turn("Hello there"))
        turn = await one_turn(session)
        after = await next_messages_until_usage(session)

    # The SDK's turn ends at turnComplete, which carries no usage; usage is the next message.
    assert turn[-1].server_content.turn_complete
    assert all(m.usage_metadata is None for m in turn)
    (usage_message,) = after
    assert usage_message.server_content is None
    assert usage_message.usage_metadata.prompt_token_count == 3  # "Hello there" → 3
    assert usage_message.usage_metadata.response_token_count == 8  # "Okay." 300 ms → 7.5 → 8
    sent = outgoing(emu)
    complete = next(i for i, m in enumerate(sent) if _turn_complete(m))
    assert "usageMetadata" not in sent[complete]
    assert sent[complete + 1] == {"usageMetadata": sent[complete + 1]["usageMetadata"]}


async def test_usage_none_for_one_turn_sends_no_usage_anywhere_and_still_grows_the_context(
    start_emulator,
):
    emu = await start_emulator(
        Scenario(
            **FAST,
            turns={1: ScriptedTurn(reply="First.", usage="none"), 2: ScriptedTurn(reply="Two.")},
        )
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(turns=text_turn("One"))
        first = await one_turn(session)
        await session.send_client_content(turns=text_turn("Two"))
        second = await one_turn(session)

    assert all(m.usage_metadata is None for m in first)
    sent = outgoing(emu)
    first_complete = next(i for i, m in enumerate(sent) if _turn_complete(m))
    assert not any("usageMetadata" in m for m in sent[: first_complete + 1])
    # The next message after turn 1's turnComplete belongs to turn 2, not a late usage.
    assert "usageMetadata" not in sent[first_complete + 1]
    # Turn 2 still re-bills turn 1 ("One" → 1, "First." 360 ms → 9) plus its own input (1).
    assert second[-1].usage_metadata.prompt_token_count == 1 + 9 + 1


@pytest.mark.parametrize("on_interrupted", [True, False])
async def test_usage_on_interrupted_false_leaves_interrupted_turns_without_usage(
    start_emulator, on_interrupted
):
    emu = await start_emulator(
        Scenario(
            **FAST,
            usage_on_interrupted=on_interrupted,
            turns={1: ScriptedTurn(reply="Never said.", reply_delay_s=30.0)},
        )
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(turns=text_turn("Tell me"))
        await session.send_client_content(turns=text_turn("Hello"))  # barge-in
        interrupted = await one_turn(session)
        answered = await one_turn(session)

    assert interrupted[0].server_content.interrupted
    assert interrupted[-1].server_content.turn_complete
    assert (interrupted[-1].usage_metadata is not None) is on_interrupted
    assert answered[-1].usage_metadata is not None
    usage_messages = [m for m in outgoing(emu) if "usageMetadata" in m]
    assert len(usage_messages) == (2 if on_interrupted else 1)


async def test_a_turns_usage_override_beats_the_scenario_default(start_emulator):
    emu = await start_emulator(
        Scenario(**FAST, usage="none", turns={2: ScriptedTurn(usage="with_turn_complete")})
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        for text in ("One", "Two", "Three"):
            await session.send_client_content(turns=text_turn(text))
            await one_turn(session)
    with_usage = [m for m in outgoing(emu) if "usageMetadata" in m]
    assert len(with_usage) == 1 and _turn_complete(with_usage[0])


async def test_go_away_at_a_time_offset_arrives_without_any_turn_then_closes_1000(
    start_emulator,
):
    emu = await start_emulator(Scenario(**FAST, go_away_at_s=0.05, go_away_time_left_s=0.05))
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        seen = []
        with pytest.raises(errors.APIError) as closed:
            async for message in session.receive():
                seen.append(message)
    assert [m.go_away.time_left for m in seen] == ["0.050s"]
    assert closed.value.code == 1000
    assert [e.close_code for e in emu.wire.closes()] == [1000]


async def test_go_away_after_s_of_a_turn_interrupts_nothing_and_arrives_mid_turn(
    start_emulator,
):
    await start_emulator(
        Scenario(
            **FAST,
            go_away_time_left_s=5.0,
            turns={1: ScriptedTurn(reply="Hi.", reply_delay_s=0.3, go_away_after_s=0.0)},
        )
    )
    async with genai.Client().aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_client_content(turns=text_turn("Hello"))
        turn = await one_turn(session)
    # goAway comes before the reply's audio, and the turn still completes with its usage.
    kinds = ["go_away" if m.go_away else "audio" if m.data else "other" for m in turn]
    assert kinds.index("go_away") < kinds.index("audio")
    assert turn[-1].server_content.turn_complete and turn[-1].usage_metadata is not None


async def test_busy_resumption_updates_mark_the_session_unresumable_while_the_model_works(
    start_emulator,
):
    emu = await start_emulator(Scenario(**FAST, resumption_busy_updates=True))
    config = live_config(session_resumption=types.SessionResumptionConfig())
    async with genai.Client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=text_turn("Hello"))
        turn = await one_turn(session)
        (update,) = await _next_resumption_update(session)

    busy = turn[0].session_resumption_update
    assert busy is not None and busy.resumable is False and not busy.new_handle
    assert update.session_resumption_update.resumable is True
    assert update.session_resumption_update.new_handle
    updates = [m["sessionResumptionUpdate"] for m in outgoing(emu) if "sessionResumption" in str(m)]
    assert updates[0] == {"resumable": False}


async def _next_resumption_update(session: genai.live.AsyncSession) -> list:
    async for message in session.receive():
        if message.session_resumption_update is not None:
            return [message]
    return []


def test_usage_options_load_from_a_scenario_file_and_bad_values_fail_clearly():
    scenario = Scenario.from_dict(
        {
            "usage": "after_turn_complete",
            "usage_on_interrupted": False,
            "go_away_at_s": 2.5,
            "resumption_busy_updates": True,
            "turns": {"2": {"usage": "none", "go_away_after_s": 1}},
            "user_says": [{"says": "Hi", "usage": "with_turn_complete"}],
        }
    )
    assert scenario.usage == "after_turn_complete" and scenario.usage_on_interrupted is False
    assert scenario.go_away_at_s == 2.5 and scenario.resumption_busy_updates is True
    assert scenario.for_turn(2).usage == "none"
    assert scenario.for_turn(1, scenario.spoken(0)).usage == "with_turn_complete"
    with pytest.raises(ValueError, match=r"Scenario\.usage must be one of"):
        Scenario.from_dict({"usage": "separate"})
    with pytest.raises(ValueError, match=r"ScriptedTurn\.usage must be one of"):
        Scenario.from_dict({"turns": {"1": {"usage": "later"}}})
    with pytest.raises(ValueError, match="usage_on_interrupted must be true or false"):
        Scenario.from_dict({"usage_on_interrupted": "no"})
