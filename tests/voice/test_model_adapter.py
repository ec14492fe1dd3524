"""The Gemini Live adapter against the emulator, through the real google-genai client over wss://.

Each test pins one promise of `GeminiLive`: the events of a turn and their order, the three ways
a spoken turn ends, tools both blocking and not, barge-in, transparent reconnects (goAway and a
dropped socket) that keep the conversation, typed errors, and a clean close.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from voicetrace.demo.tools import demo_registry
from voicetrace.emulator import Scenario, ScriptedTurn
from voicetrace.service.voice import events as ev
from voicetrace.service.voice.gemini import GeminiLive
from voicetrace.service.voice.live_model import LiveModelConfig, ModelConnectError
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.telemetry import UsageSnapshot

from tests.voice.conftest import OpenLive, StartEmulator, chunks, silence, speech

pytestmark = pytest.mark.timeout(30)

FAST = Scenario(speed=200.0, ms_per_char=5.0)


def kinds(events: list[ev.ModelEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def squash(names: list[str]) -> list[str]:
    """Collapse runs (AudioOut, AudioOut, … → AudioOut) to compare the shape of a turn."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


async def speak(live: GeminiLive, pcm: bytes) -> None:
    for chunk in chunks(pcm):
        await live.send_audio(chunk)


# -- turns ---------------------------------------------------------------------------------------


async def test_text_turn_yields_audio_transcript_and_usage_before_turn_complete(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(FAST)
    live, rec = await open_live(system_prompt="Be brief.", voice="Kore")

    await live.send_text("Hello there")
    await rec.wait_for(ev.ResumptionHandle)

    names = squash(kinds(rec.events))
    assert names[-4:] == ["GenerationComplete", "UsageSnapshot", "TurnComplete", "ResumptionHandle"]
    assert set(names[:-4]) <= {"AudioOut", "OutputTranscript"}
    audio = rec.of(ev.AudioOut)
    assert audio and all(a.sample_rate == 24_000 and len(a.data) > 0 for a in audio)
    said = "".join(t.text for t in rec.of(ev.OutputTranscript))
    assert "Hello there" in said
    (usage,) = rec.of(UsageSnapshot)
    assert usage.prompt > 0 and usage.response > 0
    assert {d.modality for d in usage.response_details} == {"AUDIO"}
    assert live.resumption_handle == rec.of(ev.ResumptionHandle)[0].handle

    # What went over the wire: the setup the adapter built, then the text turn.
    (setup,) = [e.message["setup"] for e in emu.wire.select("in", "setup")]
    assert setup["model"] == "models/gemini-3.8-live"
    assert setup["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    voice = setup["generationConfig"]["speechConfig"]["voice_config"]["prebuilt_voice_config"]
    assert voice == {"voice_name": "Kore"}
    assert "inputAudioTranscription" in setup and "outputAudioTranscription" in setup
    assert setup["sessionResumption"] == {}
    (content,) = [e.message["client_content"] for e in emu.wire.select("in", "client_content")]
    assert content == {"turns": [{"parts": [{"text": "Hello there"}], "role": "user"}],
                       "turnComplete": True}  # fmt: skip


async def test_spoken_turn_ends_on_server_vad_silence(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(Scenario(user_says=["What time is it?"], speed=200.0))
    live, rec = await open_live(silence_duration_ms=200)

    pcm = speech(0.4) + silence(0.3)
    await speak(live, pcm)
    await rec.wait_for(ev.TurnComplete)

    first = rec.events[0]
    assert first == ev.InputTranscript("What time is it?", finished=True)
    (usage,) = rec.of(UsageSnapshot)
    audio_in = {d.modality: d.tokens for d in usage.prompt_details}.get("AUDIO", 0)
    assert audio_in > 0
    # The fast audio path puts exactly the SDK's message on the wire, and every byte arrives.
    frames = [e.message["realtime_input"]["audio"] for e in emu.wire.select("in", "realtime_input")]
    assert {f["mime_type"] for f in frames} == {"audio/pcm;rate=16000"}
    assert b"".join(base64.urlsafe_b64decode(f["data"]) for f in frames) == pcm


async def test_spoken_turn_ends_on_audio_stream_end(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    await start_emulator(Scenario(user_says=["Stop listening now."], speed=200.0))
    live, rec = await open_live(silence_duration_ms=5_000)

    await speak(live, speech(0.3))
    await asyncio.sleep(0.05)
    assert not rec.of(ev.InputTranscript)  # the long VAD silence has not ended the turn
    await live.send_audio_end()
    await rec.wait_for(ev.TurnComplete)
    assert rec.of(ev.InputTranscript)[0].text == "Stop listening now."


async def test_manual_activity_start_and_end_delimit_the_user_turn(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(Scenario(user_says=["Push to talk works."], speed=200.0))
    live, rec = await open_live(automatic_activity_detection=False)

    await live.send_activity_start()
    await speak(live, speech(0.3) + silence(0.5))  # silence alone ends nothing in manual mode
    await asyncio.sleep(0.05)
    assert not rec.of(ev.TurnComplete)
    await live.send_activity_end()
    await rec.wait_for(ev.TurnComplete)

    assert rec.of(ev.InputTranscript)[0].text == "Push to talk works."
    (setup,) = [e.message["setup"] for e in emu.wire.select("in", "setup")]
    assert setup["realtimeInputConfig"]["automatic_activity_detection"]["disabled"] is True
    sent = [e.message["realtime_input"] for e in emu.wire.select("in", "realtime_input")]
    assert sent[0] == {"activityStart": {}} and sent[-1] == {"activityEnd": {}}


async def test_events_flow_across_several_turns_on_one_iterator(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    await start_emulator(FAST)
    live, rec = await open_live()

    for n, text in enumerate(("one", "two", "three"), start=1):
        await live.send_text(f"Turn {text}")
        await rec.wait_for(ev.TurnComplete, count=n)

    usages = rec.of(UsageSnapshot)
    assert len(usages) == 3
    # Each turn re-bills the whole context, so the prompt grows turn over turn.
    prompts = [u.prompt for u in usages]
    assert prompts == sorted(prompts) and prompts[0] < prompts[-1]
    assert len(rec.of(ev.GenerationComplete)) == 3


# -- tools ---------------------------------------------------------------------------------------


async def test_blocking_tool_round_trip_through_the_registry(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(FAST)
    registry = demo_registry()
    live, rec = await open_live(tools=tuple(registry.specs()))

    await live.send_text("Find coffee nearby")
    (tool_call,) = await rec.wait_for(ev.ToolCall)
    (call,) = tool_call.calls
    assert call.name == "search_nearby" and call.id
    assert call.args == {"query": "coffee", "radius_m": 1000}
    assert not rec.of(ev.TurnComplete)  # BLOCKING: the turn waits for the result

    outcome = await registry.run(call)
    await live.send_tool_results([registry.result_for(outcome)])
    await rec.wait_for(ev.TurnComplete)

    said = "".join(t.text for t in rec.of(ev.OutputTranscript))
    assert "Riverside Café" in said
    assert len(rec.of(ev.TurnComplete)) == 1
    (setup,) = [e.message["setup"] for e in emu.wire.select("in", "setup")]
    declared = {d["name"]: d for d in setup["tools"][0]["functionDeclarations"]}
    assert declared["search_nearby"]["behavior"] == "BLOCKING"
    assert declared["search_nearby"]["parameters"]["properties"]["radius_m"]["type"] == "INTEGER"
    (response,) = emu.wire.select("in", "tool_response")
    (sent,) = response.message["tool_response"]["functionResponses"]
    assert sent["id"] == call.id and sent["response"] == outcome.response
    assert "scheduling" not in sent


async def test_non_blocking_tool_result_is_scheduled_into_a_new_turn(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(FAST)
    registry = ToolRegistry()

    @registry.register(non_blocking=True, scheduling="WHEN_IDLE")
    def navigate_to_location(destination: str, mode: str = "walking") -> dict[str, object]:
        """Directions to a place."""
        return {"steps": [{"name": f"{destination} by {mode}"}]}

    live, rec = await open_live(tools=tuple(registry.specs()))
    await live.send_text("How do I get to the harbour?")
    (tool_call,) = await rec.wait_for(ev.ToolCall)
    # NON_BLOCKING: the model keeps going and closes its turn without the result.
    await rec.wait_for(ev.TurnComplete)
    before = squash(kinds(rec.events))
    assert (
        before.index("ToolCall") < before.index("GenerationComplete") < before.index("TurnComplete")
    )

    outcome = await registry.run(tool_call.calls[0])
    await live.send_tool_results([registry.result_for(outcome)])
    await rec.wait_for(ev.TurnComplete, count=2)

    said = "".join(t.text for t in rec.of(ev.OutputTranscript))
    assert "harbour by walking" in said
    (setup,) = [e.message["setup"] for e in emu.wire.select("in", "setup")]
    assert setup["tools"][0]["functionDeclarations"][0]["behavior"] == "NON_BLOCKING"
    (response,) = emu.wire.select("in", "tool_response")
    assert response.message["tool_response"]["functionResponses"][0]["scheduling"] == "WHEN_IDLE"


async def test_barge_in_cancels_pending_tool_calls_and_interrupts_the_turn(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    await start_emulator(FAST)
    registry = demo_registry()
    live, rec = await open_live(tools=tuple(registry.specs()))

    await live.send_text("Find a pharmacy and give me directions to the library")
    (tool_call,) = await rec.wait_for(ev.ToolCall)
    assert {c.name for c in tool_call.calls} == {"search_nearby", "navigate_to_location"}
    mark = len(rec.events)
    await live.send_text("Never mind")  # the user talks over the pending calls
    await rec.wait_for(ev.TurnComplete)

    assert squash(kinds(rec.since(mark)))[:4] == [
        "ToolCallCancellation", "Interrupted", "UsageSnapshot", "TurnComplete",
    ]  # fmt: skip
    (cancelled,) = rec.of(ev.ToolCallCancellation)
    assert set(cancelled.ids) == {c.id for c in tool_call.calls}
    assert not rec.of(ev.GenerationComplete)  # an interrupted turn never completes generation
    await rec.wait_for(ev.TurnComplete, count=2)  # and the new turn is answered


async def test_barge_in_during_a_long_reply_interrupts_it(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    await start_emulator(Scenario(speed=20.0, ms_per_char=20.0))
    live, rec = await open_live()

    await live.send_text("Tell me a long story")
    await rec.wait_for(ev.AudioOut, count=3)
    await live.send_text("Stop")
    (interrupted,) = await rec.wait_for(ev.Interrupted)
    assert interrupted == ev.Interrupted()
    first_turn = kinds(rec.events)[: kinds(rec.events).index("TurnComplete") + 1]
    assert "Interrupted" in first_turn and "GenerationComplete" not in first_turn


# -- reconnects ----------------------------------------------------------------------------------


async def test_go_away_reconnects_with_the_handle_and_keeps_the_conversation(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(FAST)
    live, rec = await open_live()

    await live.send_text("Remember the number seven")
    await rec.wait_for(ev.ResumptionHandle)
    handle = live.resumption_handle
    emu.go_away(0.05)
    (go_away,) = await rec.wait_for(ev.GoAway)
    assert go_away.time_left_s == pytest.approx(0.05)
    (reconnected,) = await rec.wait_for(ev.Reconnected)
    assert reconnected.reason == "go_away" and reconnected.resumed
    assert 0 <= reconnected.downtime_s < 2

    await live.send_text("What was the number?")
    await rec.wait_for(ev.TurnComplete, count=2)
    first, second = rec.of(UsageSnapshot)
    assert second.prompt > first.prompt  # the context survived
    setups = [e.message["setup"] for e in emu.wire.select("in", "setup")]
    assert len(setups) == 2 and setups[1]["sessionResumption"] == {"handle": handle}


async def test_audio_streamed_through_a_go_away_reconnect_never_fails_and_reaches_the_new_session(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(Scenario(user_says=["Still there?"], speed=200.0))
    live, rec = await open_live(silence_duration_ms=200)
    frames = chunks(silence(0.02))[0]

    async def stream() -> None:
        while not rec.of(ev.Reconnected):
            await live.send_audio(frames)
            await asyncio.sleep(0.002)

    streamer = asyncio.create_task(stream())
    emu.go_away(0.02)
    await rec.wait_for(ev.Reconnected)
    await asyncio.wait_for(streamer, 2)  # no send raised while the session was replaced
    await speak(live, speech(0.3) + silence(0.3))
    await rec.wait_for(ev.TurnComplete)

    assert rec.of(ev.InputTranscript)[0].text == "Still there?"
    second = [e for e in emu.wire.select("in", "realtime_input") if e.connection == 2]
    assert second, "audio went to the new connection"


async def test_dropped_connection_reconnects_and_sends_meanwhile_wait(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(FAST)
    live, rec = await open_live()
    await live.send_text("First")
    await rec.wait_for(ev.ResumptionHandle)

    assert emu.drop_connections() == 1
    # Sent straight away: it either waits for the new session or goes out on it.
    await live.send_text("Second")
    (reconnected,) = await rec.wait_for(ev.Reconnected)
    assert reconnected.reason == "connection_lost" and reconnected.resumed
    await rec.wait_for(ev.TurnComplete, count=2)
    first, second = rec.of(UsageSnapshot)
    assert second.prompt > first.prompt


async def test_reconnect_gives_up_after_max_reconnects_with_a_model_error(
    start_emulator: StartEmulator,
) -> None:
    emu = await start_emulator(FAST)
    live = GeminiLive(LiveModelConfig(max_reconnects=2, connect_timeout_s=2))
    await live.connect()
    try:
        await emu.stop()  # the server is gone for good: reconnects are refused
        events = [e async for e in live.events()]
    finally:
        await live.close()
    assert isinstance(events[-1], ev.ModelError)
    assert events[-1].retryable and "Reconnected" not in kinds(events)


# -- errors and lifecycle ------------------------------------------------------------------------


async def test_bad_api_key_is_a_typed_connect_error_with_close_code_1008(
    start_emulator: StartEmulator,
) -> None:
    await start_emulator(FAST)
    live = GeminiLive(LiveModelConfig(api_key="not-the-key"))
    with pytest.raises(ModelConnectError) as caught:
        await live.connect()
    await live.close()
    assert caught.value.code == 1008 and not caught.value.retryable
    assert "API key not valid" in caught.value.reason
    assert "not-the-key" not in str(caught.value)


async def test_unknown_model_is_a_typed_connect_error_with_close_code_1008(
    start_emulator: StartEmulator,
) -> None:
    await start_emulator(FAST)
    live = GeminiLive(LiveModelConfig(model="gemini-0.1-nope"))
    with pytest.raises(ModelConnectError) as caught:
        await live.connect()
    await live.close()
    assert caught.value.code == 1008
    assert "gemini-0.1-nope" in caught.value.reason


async def test_non_retryable_close_mid_session_ends_the_stream_with_model_error(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    emu = await start_emulator(
        Scenario(turns={2: ScriptedTurn(close_code=1011, close_reason="Internal error.")},
                 speed=200.0, ms_per_char=5.0)
    )  # fmt: skip
    live, rec = await open_live()
    await live.send_text("Fine")
    await rec.wait_for(ev.TurnComplete)
    await live.send_text("Boom")
    (error,) = await rec.wait_for(ev.ModelError)
    await asyncio.wait_for(rec.ended.wait(), 2)
    assert (error.code, error.reason, error.retryable) == (1011, "Internal error.", False)
    assert rec.events[-1] is error and not rec.of(ev.Reconnected)
    assert len(emu.wire.select("in", "setup")) == 1
    await live.send_text("ignored")  # after the end, sends are dropped, not raised


async def test_close_is_idempotent_and_ends_the_event_stream(
    start_emulator: StartEmulator, open_live: OpenLive
) -> None:
    await start_emulator(FAST)
    live, rec = await open_live()
    await live.send_text("Hello")
    await rec.wait_for(ev.TurnComplete)

    await live.close()
    await asyncio.wait_for(rec.ended.wait(), 2)
    await live.close()
    assert live.closed
    assert not rec.of(ev.ModelError)  # our own close is not an error
    assert [e async for e in live.events()] == []
    await live.send_audio(b"\x00\x00" * 160)  # dropped quietly after close
    with pytest.raises(ValueError, match="PCM16"):
        await live.send_audio(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="non-empty"):
        await live.send_text("  ")


async def test_async_context_manager_connects_and_closes(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(FAST)
    async with GeminiLive(LiveModelConfig()) as live:
        assert not live.closed
        await live.send_text("Hi")
        async for event in live.events():
            if isinstance(event, ev.TurnComplete):
                break
    assert live.closed
    await asyncio.sleep(0.05)
    assert emu.active_connections == 0  # the socket really is closed
