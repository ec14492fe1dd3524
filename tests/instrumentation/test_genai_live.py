"""The drop-in google-genai Live instrumentor, on the raw-SDK example app against the emulator.

The same turns run through the voicetrace service and through `examples/raw_sdk.py` with the
instrumentor must give the same span contract (tree, usage, cost, end reasons); the app must
receive the same messages with and without it; it must never raise into the app, and
`uninstrument()` must put the SDK back exactly.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import live, types
from voicetrace.emulator import Emulator, Scenario, ScriptedTurn
from voicetrace.service.client import VoiceClient
from voicetrace.service.settings import Settings
from voicetrace.service.voice.events import FunctionCall
from voicetrace.service.voice.gemini_events import function_declaration
from voicetrace.telemetry.instrumentation.genai_live import session_context
from voicetrace.telemetry.keys import CONTENT_KEYS

from examples import raw_sdk
from examples.raw_sdk import Say
from tests.instrumentation.conftest import Traced, shape

SCRIPT = (Say(text="Hello there!"), Say(speech_s=0.8), Say(text="Find coffee near me"))


def service_like_config() -> tuple[types.LiveConnectConfig, Any]:
    """The setup the service sends with its default settings and demo tools (the emulator
    bills the system prompt and declarations, so both runs must declare the same)."""
    from voicetrace.demo.tools import demo_registry

    settings, registry = Settings(jwt_secret="x" * 32), demo_registry()
    voice = types.PrebuiltVoiceConfig(voice_name=settings.voice)
    vad = types.AutomaticActivityDetection(silence_duration_ms=settings.silence_duration_ms)
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(prebuilt_voice_config=voice)
        ),
        system_instruction=settings.system_prompt,
        tools=[
            types.Tool(function_declarations=[function_declaration(s) for s in registry.specs()])
        ],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(),
        realtime_input_config=types.RealtimeInputConfig(automatic_activity_detection=vad),
    )

    async def run_tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
        outcome = await registry.run(FunctionCall("call", name, args))
        return outcome.response

    return config, run_tool


@pytest.fixture
async def emulator(monkeypatch: pytest.MonkeyPatch) -> Any:
    async with Emulator(scenario=Scenario()) as emu:
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        for name, value in emu.env().items():
            monkeypatch.setenv(name, value)
        yield emu


def normalized(messages: list[types.LiveServerMessage]) -> list[dict[str, Any]]:
    """Messages as JSON, minus what differs per connection (resumption handles)."""
    out = []
    for msg in messages:
        data = msg.model_dump(mode="json", exclude_none=True)
        update = data.get("session_resumption_update")
        if update and "new_handle" in update:
            update["new_handle"] = "<handle>"
        for call in (data.get("tool_call") or {}).get("function_calls", ()):
            call["id"] = "<call id>"  # ids carry the emulator's connection number
        out.append(data)
    return out


async def test_the_raw_sdk_app_traced_by_one_line_matches_the_service_span_contract(
    start_service: Any, traced: Any
) -> None:
    svc = await start_service(scenario=Scenario())
    created = await svc.create_session("alice")
    async with VoiceClient.connect(svc.ws_url(created["id"]), svc.token("alice")) as client:
        await client.wait_for("session_started")
        await client.send("text", text=SCRIPT[0].text)
        await client.wait_for("turn_complete", count=1)
        await client.say(raw_sdk.speech(0.8) + bytes(2 * 16_000 * 6 // 10))
        await client.wait_for("turn_complete", count=2)
        await client.send("text", text=SCRIPT[2].text)
        await client.wait_for("turn_complete", count=3)
        await client.send("end")
        await client.wait_for("session_ended")
    service_shape = shape(svc.finished_spans())

    t: Traced = traced(agent_name=svc.settings.agent_name, user_id="alice")
    config, run_tool = service_like_config()
    await raw_sdk.converse(genai.Client(), SCRIPT, config=config, tools=run_tool)
    await asyncio.sleep(0.6)  # usage_wait_s: nothing waits, but let settled turns go out
    app_shape = shape(t.spans())

    assert [turn["turn"]["voice.turn.trigger"] for turn in app_shape["turns"]] == [
        "user_text",
        "user_audio",
        "user_text",
    ]
    [tool] = app_shape["turns"][2]["tools"]
    assert dict(tool) == {
        "langfuse.observation.type": "tool",
        "gen_ai.tool.name": "search_nearby",
        "voice.tool.status": "ok",
    }
    assert all(turn["chat"]["voice.cost.usd"] > 0 for turn in app_shape["turns"])
    assert app_shape["root"]["voice.session.end_reason"] == "completed"
    for mine, theirs in zip(app_shape["turns"], service_shape["turns"], strict=True):
        assert mine == theirs
    assert app_shape == service_shape


async def test_the_app_receives_the_same_messages_with_and_without_the_instrumentor(
    emulator: Emulator, traced: Any
) -> None:
    plain = await raw_sdk.converse(genai.Client(), SCRIPT)
    t: Traced = traced()
    traced_run = await raw_sdk.converse(genai.Client(), SCRIPT)
    assert len(traced_run) > 20
    assert all(type(m) is types.LiveServerMessage for m in traced_run)
    assert normalized(traced_run) == normalized(plain)
    assert t.telemetry.health()["tracer_errors"] == 0
    assert len([s for s in t.spans() if s.name.startswith("invoke_agent")]) == 3


async def test_barge_in_cuts_the_turn_and_the_next_turn_answers(
    emulator: Emulator, traced: Any
) -> None:
    t: Traced = traced()
    script = (Say(text="Tell me a long story", barge_in="Stop. What time is it?"),)
    await raw_sdk.converse(genai.Client(), script)
    s = shape(t.spans())
    first, second = s["turns"]
    assert first["turn"]["voice.turn.end_reason"] == "interrupted"
    assert first["turn"]["voice.turn.interrupted"] is True
    assert "user.barge_in" in first["events"]  # the user's text cut it, before the server did
    assert first["chat"]["gen_ai.response.finish_reasons"] == ("interrupted",)
    assert first["chat"]["voice.cost.usd"] > 0  # the cut turn is still billed
    assert second["turn"]["voice.turn.end_reason"] == "completed"
    assert s["root"]["voice.session.interruptions"] == 1


async def test_a_go_away_resumed_by_the_app_stays_one_session_with_a_reconnect(
    monkeypatch: pytest.MonkeyPatch, traced: Any
) -> None:
    scenario = Scenario(turns={1: ScriptedTurn(go_away=True)})
    async with Emulator(scenario=scenario) as emu:
        for name, value in emu.env().items():
            monkeypatch.setenv(name, value)
        t: Traced = traced()
        script = (Say(text="Hello there!"), Say(text="And now?"))
        await raw_sdk.converse(genai.Client(), script)
        assert len({e.connection for e in emu.wire if e.direction == "in"}) == 2
    s = shape(t.spans())
    assert [turn["turn"]["voice.turn.number"] for turn in s["turns"]] == [1, 2]
    assert s["connects"] == [(False, "UNSET"), (True, "UNSET")]
    assert {"model.go_away", "model.reconnected"} <= set(s["root_events"])
    assert s["root"]["voice.session.reconnects"] == 1
    assert s["root"]["voice.session.end_reason"] == "completed"


async def test_content_is_recorded_only_with_consent(emulator: Emulator, traced: Any) -> None:
    t: Traced = traced(capture_content=True)  # capture on, but no consent: nothing
    await raw_sdk.converse(genai.Client(), SCRIPT[:1])
    assert not any(set(s.attributes or {}) & CONTENT_KEYS for s in t.spans())
    t.instrumentor.uninstrument()

    t = traced(capture_content=True, recording_consent=True)
    await raw_sdk.converse(
        genai.Client(), (Say(text="Hello, my key is AIzaSyA1234567890abcdefghijklmnopqrstu"),)
    )
    turn = next(s for s in t.spans() if s.name.startswith("invoke_agent"))
    user_input = str((turn.attributes or {})["langfuse.observation.input"])
    assert user_input.startswith("Hello, my key is") and "AIzaSy" not in user_input


async def test_a_failed_connect_is_an_errored_session_and_the_app_sees_the_sdk_error(
    emulator: Emulator, traced: Any
) -> None:
    t: Traced = traced()
    with pytest.raises(genai.errors.APIError) as raised:
        async with genai.Client().aio.live.connect(model="no-such-model"):
            pass
    assert raised.value.code == 1008
    root = next(s for s in t.spans() if s.name == "voice_session")
    assert (root.attributes or {})["voice.session.end_reason"] == "model_error"
    connect = next(s for s in t.spans() if s.name == "model.connect")
    assert connect.status.status_code.name == "ERROR"


async def test_tracing_failures_never_reach_the_app_and_are_counted(
    emulator: Emulator, traced: Any
) -> None:
    t: Traced = traced()
    # A tracing misconfiguration (an empty user id is not a valid SessionInfo) must cost the
    # app nothing: the session runs untraced and the failure is counted.
    with session_context(user_id=""):
        got = await raw_sdk.converse(genai.Client(), SCRIPT[:1])
    assert got[-1].server_content is not None or got[-2].server_content is not None
    assert any(m.server_content is not None and m.server_content.turn_complete for m in got)
    health = t.telemetry.health()
    assert health["tracer_errors"] == 1 and "genai_live.connect" in health["last_error"]
    assert t.spans() == []


def test_uninstrument_restores_every_original_method(traced: Any) -> None:
    names = (
        "send_realtime_input",
        "send_client_content",
        "send_tool_response",
        "send",
        "receive",
        "close",
    )
    before = {n: live.AsyncSession.__dict__[n] for n in names}
    connect = live.AsyncLive.__dict__["connect"]
    t: Traced = traced()
    assert live.AsyncLive.__dict__["connect"] is not connect
    assert all(live.AsyncSession.__dict__[n] is not before[n] for n in names)
    t.instrumentor.uninstrument()
    assert live.AsyncLive.__dict__["connect"] is connect
    assert all(live.AsyncSession.__dict__[n] is before[n] for n in names)


async def test_an_app_closing_the_session_while_receive_runs_ends_completed_not_model_error(
    emulator: Emulator, traced: Any
) -> None:
    """ADK and Pipecat close the session while their receive loop still runs: the close that
    loop then sees is the app's own, so the session ends `completed`, not as a model error."""
    t: Traced = traced()
    first = asyncio.Event()
    seen: list[BaseException] = []

    async def receive_loop(session: live.AsyncSession) -> None:
        try:
            while True:  # receive() ends after each turn: the app loops, as frameworks do
                async for _ in session.receive():
                    first.set()
        except Exception as exc:  # what the raw SDK raises to the app when the socket closes
            seen.append(exc)

    async with genai.Client().aio.live.connect(model=raw_sdk.MODEL) as session:
        loop = asyncio.create_task(receive_loop(session))
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Hello there!")])
        )
        await asyncio.wait_for(first.wait(), 5.0)
        await session.close()
        await asyncio.wait_for(loop, 5.0)
    root = next(s for s in t.spans() if s.name == "voice_session")
    assert (root.attributes or {})["voice.session.end_reason"] == "completed", seen
    assert root.status.status_code.name != "ERROR"


async def test_sessions_after_uninstrument_are_not_traced(emulator: Emulator, traced: Any) -> None:
    t: Traced = traced()
    t.instrumentor.uninstrument()
    await raw_sdk.converse(genai.Client(), SCRIPT[:1])
    assert t.spans() == []


def test_opentelemetry_instrument_finds_and_installs_the_instrumentor() -> None:
    """The real `opentelemetry-instrument` command, in a child process: the entry point is
    found and the SDK's connect is wrapped before the app's code runs."""
    probe = (
        "from google.genai import live\n"
        "from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor\n"
        "wrapped = hasattr(live.AsyncLive.__dict__['connect'], '__voicetrace_original__')\n"
        "print(GenAILiveInstrumentor().is_instrumented_by_opentelemetry, wrapped)\n"
    )
    command = Path(sys.executable).with_name("opentelemetry-instrument")
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    done = subprocess.run(
        [str(command), sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.stdout.split() == ["True", "True"], done.stdout + done.stderr
    plain = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
    )
    assert plain.stdout.split() == ["False", "False"], plain.stdout + plain.stderr


async def test_the_deprecated_send_and_a_failed_tool_are_traced_like_the_typed_methods(
    emulator: Emulator, traced: Any
) -> None:
    t: Traced = traced()
    config = raw_sdk.default_config()
    async with genai.Client().aio.live.connect(model=raw_sdk.MODEL, config=config) as session:
        with pytest.warns(DeprecationWarning):
            await session.send(input="Find coffee near me", end_of_turn=True)
        async for msg in session.receive():
            if msg.tool_call is not None:
                [call] = msg.tool_call.function_calls or []
                failed = types.FunctionResponse(
                    id=call.id, name=call.name, response={"error": "places service down"}
                )
                with pytest.warns(DeprecationWarning):
                    await session.send(input=failed)
    s = shape(t.spans())
    [turn] = s["turns"]
    assert turn["turn"]["voice.turn.trigger"] == "user_text"
    assert turn["turn"]["voice.turn.end_reason"] == "tool_error"
    assert dict(turn["tools"][0])["voice.tool.status"] == "error"
    assert s["root"]["voice.session.tool_errors"] == 1
    assert turn["chat"]["voice.cost.usd"] > 0


async def test_manual_activity_markers_open_and_time_the_turn(
    emulator: Emulator, traced: Any
) -> None:
    t: Traced = traced()
    vad_off = types.RealtimeInputConfig(
        automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
    )
    config = raw_sdk.default_config().model_copy(update={"realtime_input_config": vad_off})
    async with genai.Client().aio.live.connect(model=raw_sdk.MODEL, config=config) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        for frame in raw_sdk.chunks(raw_sdk.speech(0.5)):
            blob = types.Blob(data=frame, mime_type=raw_sdk.INPUT_MIME)
            await session.send_realtime_input(audio=blob)
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        got = [m async for m in session.receive()]
    assert got[-1].server_content is not None and got[-1].server_content.turn_complete
    [turn] = shape(t.spans())["turns"]
    assert turn["turn"]["voice.turn.trigger"] == "activity"
    assert {"user.speech.started", "user.speech.ended"} <= set(turn["events"])
    assert turn["chat"]["gen_ai.usage.input_tokens"] > 0


async def test_resuming_before_leaving_the_old_connection_continues_the_same_session(
    emulator: Emulator, traced: Any
) -> None:
    """Apps handling goAway often open the new connection first, then leave the old one."""
    t: Traced = traced()
    client = genai.Client()
    config = raw_sdk.default_config()
    hello = types.Content(role="user", parts=[types.Part(text="Hello there!")])
    old_cm = client.aio.live.connect(model=raw_sdk.MODEL, config=config)
    old = await old_cm.__aenter__()
    await old.send_client_content(turns=hello)
    got = [m async for m in old.receive()]
    handle, _ = await raw_sdk._drain(old, got, wait_s=0.3)
    assert handle is not None
    resume = config.model_copy(
        update={"session_resumption": types.SessionResumptionConfig(handle=handle)}
    )
    async with client.aio.live.connect(model=raw_sdk.MODEL, config=resume) as new:
        await old_cm.__aexit__(None, None, None)  # the old one goes while the new one is open
        again = types.Content(role="user", parts=[types.Part(text="And now?")])
        await new.send_client_content(turns=again)
        got += [m async for m in new.receive()]
    s = shape(t.spans())
    assert [turn["turn"]["voice.turn.number"] for turn in s["turns"]] == [1, 2]
    assert s["connects"] == [(False, "UNSET"), (True, "UNSET")]
    assert s["root"]["voice.session.reconnects"] == 1
    assert s["root"]["voice.session.end_reason"] == "completed"


async def test_a_blank_realtime_text_after_the_turn_began_is_not_a_new_user_turn(
    emulator: Emulator, traced: Any
) -> None:
    """Pipecat on Gemini 3.x sends `send_realtime_input(text=" ")` after every
    `send_client_content(turn_complete=True)` so that the model answers; it may land after the
    answer started. Neither the server nor the trace takes it for the user talking again."""
    t: Traced = traced()
    hello = types.Content(role="user", parts=[types.Part(text="Hello there!")])
    async with genai.Client().aio.live.connect(
        model=raw_sdk.MODEL, config=raw_sdk.default_config()
    ) as session:
        await session.send_client_content(turns=hello, turn_complete=True)
        got = []
        async for msg in session.receive():
            got.append(msg)
            if len(got) == 2:  # the answer is under way
                await session.send_realtime_input(text=" ")
    assert not any(m.server_content and m.server_content.interrupted for m in got)
    [turn] = shape(t.spans())["turns"]
    assert turn["turn"]["voice.turn.trigger"] == "user_text"
    assert turn["turn"]["voice.turn.interrupted"] is False


def _search_config(behavior: types.Behavior | None) -> types.LiveConnectConfig:
    config = raw_sdk.default_config()
    assert config.tools is not None and config.tools[0].function_declarations is not None
    [decl] = config.tools[0].function_declarations
    tool = types.Tool(function_declarations=[decl.model_copy(update={"behavior": behavior})])
    return config.model_copy(update={"tools": [tool]})


@pytest.mark.parametrize("model", [raw_sdk.MODEL, "gemini-3.1-flash-live-preview"])
async def test_a_function_without_behaviour_is_traced_with_the_models_default(
    emulator: Emulator, traced: Any, model: str
) -> None:
    """ADK's and Pipecat's own declarations leave the behaviour unset: NON_BLOCKING on the
    3.8 Live models, BLOCKING elsewhere — the tool span says which the server applied."""
    t: Traced = traced()
    say = (Say(text="Find coffee near me"),)
    await raw_sdk.converse(genai.Client(), say, config=_search_config(None), model=model)
    await asyncio.sleep(0.3)  # a NON_BLOCKING result's own turn
    [tool] = [s for s in t.spans() if s.name.startswith("execute_tool ")]
    # The emulator applies the same defaults as Gemini (docs/emulator.md, "Tools").
    assert (tool.attributes or {})["voice.tool.non_blocking"] is (model == raw_sdk.MODEL)
