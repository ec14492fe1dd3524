"""Connection-level behaviour over the real SDK: error closes, goAway, resumption, dropped
connections and scripted failures."""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import errors, types
from voicetrace.emulator import Scenario, ScriptedTurn

from tests.emulator.helpers import FAST, live_config, one_turn, text_turn, until


async def _connect_error(model: str = "gemini-3.8-live", **config) -> errors.APIError:
    with pytest.raises(errors.APIError) as caught:
        async with genai.Client().aio.live.connect(
            model=model, config=live_config(**config)
        ) as session:
            await one_turn(session)
    return caught.value


async def test_a_wrong_api_key_is_closed_with_1008_and_a_reason(emu, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "not-the-key")
    error = await _connect_error()
    assert error.code == 1008
    assert "API key not valid" in str(error.details)
    assert emu.wire.closes()[0].close_code == 1008


async def test_an_unknown_model_is_closed_with_1008(emu):
    error = await _connect_error(model="gemini-9-imaginary")
    assert error.code == 1008 and "models/gemini-9-imaginary is not found" in str(error.details)


@pytest.mark.parametrize(
    "model",
    [
        "gemini-3.8-live",
        "gemini-3.1-flash-live-preview",
        "gemini-2.5-flash-native-audio-preview-12-2025",
        "gemini-live-2.5-flash-native-audio",
    ],
)
async def test_text_modality_on_an_audio_only_model_is_closed_with_1007(emu, model):
    error = await _connect_error(model=model, response_modalities=["TEXT"])
    assert error.code == 1007 and "TEXT" in str(error.details)


async def test_an_unknown_resumption_handle_is_closed_with_1008(emu):
    error = await _connect_error(session_resumption=types.SessionResumptionConfig(handle="nope"))
    assert error.code == 1008 and "handle" in str(error.details)


async def test_go_away_then_resume_with_the_last_handle_keeps_the_conversation(start_emulator):
    emu = await start_emulator(
        Scenario(**FAST, turns={1: ScriptedTurn(reply="First."), 2: ScriptedTurn(reply="Second.")})
    )
    config = live_config(session_resumption=types.SessionResumptionConfig())
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=text_turn("One"))
        first = await one_turn(session)
        update = await session._receive()  # sessionResumptionUpdate follows turnComplete
        await until(lambda: emu.active_connections == 1)
        assert emu.go_away(time_left_s=0.1) == 1
        seen: list[types.LiveServerMessage] = []
        with pytest.raises(errors.APIError) as closed:
            async for message in session.receive():
                seen.append(message)
    assert update.session_resumption_update.resumable is True
    handle = update.session_resumption_update.new_handle
    assert handle
    assert seen[0].go_away.time_left == "0.100s"
    assert closed.value.code == 1000  # the SDK reports even a normal close as an APIError

    resumed = live_config(session_resumption=types.SessionResumptionConfig(handle=handle))
    async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=resumed) as session:
        await session.send_client_content(turns=text_turn("Two"))
        second = await one_turn(session)
    assert emu.connections == 2
    u1, u2 = first[-1].usage_metadata, second[-1].usage_metadata
    # The resumed context holds turn 1's input (1) and output ("First." = 360 ms → 9): prompt
    # tokens keep growing, and the turn count goes on (turn 2's scripted reply).
    assert (u1.prompt_token_count, u1.response_token_count) == (1, 9)
    assert u2.prompt_token_count == 1 + 9 + 1
    assert (
        "".join(
            m.server_content.output_transcription.text
            for m in second
            if m.server_content and m.server_content.output_transcription
        )
        == "Second."
    )


async def test_scenario_go_away_after_turn_n_closes_normally(start_emulator):
    emu = await start_emulator(Scenario(**FAST, go_away_after_turn=1, go_away_time_left_s=0.05))
    async with genai.Client().aio.live.connect(
        model="gemini-3.8-live", config=live_config()
    ) as session:
        await session.send_client_content(turns=text_turn("Hi"))
        await one_turn(session)
        with pytest.raises(errors.APIError) as closed:
            message = await session._receive()
            assert message.go_away is not None
            await session._receive()
    assert closed.value.code == 1000
    assert [e.close_code for e in emu.wire.closes()] == [1000]


async def test_dropped_connections_surface_as_abnormal_closure(emu, client):
    async with client.aio.live.connect(model="gemini-3.8-live", config=live_config()) as session:
        await until(lambda: emu.active_connections == 1)
        assert emu.drop_connections() == 1
        with pytest.raises(errors.APIError) as caught:
            await session._receive()
    assert caught.value.code == 1006
    await until(lambda: emu.active_connections == 0)


async def test_a_scripted_error_close_reaches_the_sdk_with_its_code(start_emulator):
    await start_emulator(
        Scenario(**FAST, turns={2: ScriptedTurn(close_code=1011, close_reason="Internal error.")})
    )
    async with genai.Client().aio.live.connect(
        model="gemini-3.8-live", config=live_config()
    ) as session:
        await session.send_client_content(turns=text_turn("Fine"))
        await one_turn(session)
        await session.send_client_content(turns=text_turn("Boom"))
        with pytest.raises(errors.APIError) as caught:
            await one_turn(session)
    assert (caught.value.code, caught.value.details) == (1011, "Internal error.")


async def test_stop_closes_open_connections_with_1001(start_emulator):
    emu = await start_emulator()
    async with genai.Client().aio.live.connect(
        model="gemini-3.8-live", config=live_config()
    ) as session:
        await until(lambda: emu.active_connections == 1)
        stopping = asyncio.create_task(emu.stop())
        with pytest.raises(errors.APIError) as caught:
            await session._receive()
        await stopping
    assert caught.value.code == 1001
    with pytest.raises(RuntimeError):
        emu.base_url  # noqa: B018 (a stopped emulator has no address)
