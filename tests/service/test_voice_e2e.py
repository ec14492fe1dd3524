"""End to end: a real WebSocket client → the service on uvicorn → the google-genai SDK → the
emulator over TLS, with the spans of each session checked as the OTel SDK produced them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from voicetrace.emulator import Scenario
from voicetrace.service.client import VoiceClient
from voicetrace.service.voice.audio import silence, speech_like

pytestmark = pytest.mark.asyncio

IDS = ("session.id", "user.id", "gen_ai.conversation.id")


def spoken(seconds: float) -> bytes:
    return speech_like(seconds) + silence(0.6)


def by_name(spans: list[Any], prefix: str) -> list[Any]:
    return [s for s in spans if s.name.startswith(prefix)]


def session_spans(svc: Any, session_id: str) -> list[Any]:
    return [s for s in svc.finished_spans() if s.attributes.get("session.id") == session_id]


async def test_typed_turn_flows_end_to_end_and_becomes_one_trace(start_service):
    svc = await start_service()
    session = await svc.create_session("alice")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("alice")) as client:
        started = await client.wait_for("session_started")
        assert started["protocol_version"] == 1 and started["output_sample_rate"] == 24_000
        assert (await svc.get_session(session["id"]))["state"] == "LIVE"
        await client.send("text", text="Hello there, what can you do?")
        done = await client.wait_for("turn_complete")
        await client.send("end")
        ended = await client.wait_for("session_ended")
    assert done["number"] == 1 and done["end_reason"] == "completed"
    assert done["total_ms"] > 0
    model_text = "".join(m["text"] for m in client.of_type("transcript") if m["role"] == "model")
    assert "Hello there" in model_text  # the emulator's assistant answers from what it was told
    assert sum(a.bytes_received for a in client.audio.values()) > 0
    assert ended["reason"] == "completed" and ended["summary"]["turns"] == 1
    assert (await svc.get_session(session["id"]))["state"] == "ENDED"

    spans = session_spans(svc, session["id"])
    names = sorted(s.name for s in spans)
    assert names == sorted(
        ["voice_session", "model.connect", "invoke_agent voicetrace", "chat gemini-3.8-live"]
    )
    (root,) = by_name(spans, "voice_session")
    assert root.parent is None
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    (turn,) = by_name(spans, "invoke_agent")
    (chat,) = by_name(spans, "chat")
    assert turn.parent.span_id == root.context.span_id
    assert chat.parent.span_id == turn.context.span_id
    for span in spans:
        assert {k: span.attributes.get(k) for k in IDS} == {
            "session.id": session["id"],
            "user.id": "alice",
            "gen_ai.conversation.id": session["id"],
        }, span.name
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0


async def test_spoken_turns_are_ended_by_server_vad_and_numbered(start_service):
    svc = await start_service(
        scenario=Scenario(user_says=["Tell me about the old town.", "Thanks!"])
    )
    session = await svc.create_session("bob")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("bob")) as client:
        await client.wait_for("session_started")
        await client.say(spoken(1.0), pace_s=0.02)  # like a microphone: 20 ms frames in real time
        first = await client.wait_for("turn_complete")
        await client.say(spoken(0.6))
        second = await client.wait_for("turn_complete", count=2)
        await client.send("end")
        await client.wait_for("session_ended")
    heard = [m for m in client.of_type("transcript") if m["role"] == "user" and m["final"]]
    assert [m["turn"] for m in heard] == [1, 2]
    # Each turn's audio is announced once, so the client files every byte under the right turn.
    assert [m["turn"] for m in client.of_type("response_started")] == [1, 2]
    assert set(client.audio) == {1, 2} and all(a.bytes_received for a in client.audio.values())
    stops = {
        m["turn"]: m for m in client.sent if m["type"] == "playback" and m["event"] == "stopped"
    }
    assert stops[2]["played_ms"] == pytest.approx(client.audio[2].ms, abs=0.1)
    assert (first["number"], second["number"]) == (1, 2)
    assert first["user_speech_ms"] > 500  # one second of voiced audio, measured on our side
    phases = first["user_speech_ms"] + first["endpointing_ms"] + first["response_ms"]
    assert phases == pytest.approx(first["total_ms"], abs=0.01)


async def test_tool_calls_run_concurrently_and_are_reported_and_traced(start_service):
    svc = await start_service()
    session = await svc.create_session("carol")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("carol")) as client:
        await client.wait_for("session_started")
        await client.send(
            "text", text="Find a coffee place nearby and give me directions to the harbour"
        )
        await client.wait_for("tool_result", count=2)
        await client.wait_for("turn_complete")
        await client.send("end")
        await client.wait_for("session_ended")
    calls = {m["name"] for m in client.of_type("tool_call")}
    assert calls == {"search_nearby", "navigate_to_location"}
    assert all(m["ok"] for m in client.of_type("tool_result"))
    spans = session_spans(svc, session["id"])
    tools = by_name(spans, "execute_tool")
    assert sorted(s.name for s in tools) == [
        "execute_tool navigate_to_location",
        "execute_tool search_nearby",
    ]
    (turn,) = by_name(spans, "invoke_agent")
    assert all(t.parent.span_id == turn.context.span_id for t in tools)
    assert {t.attributes["gen_ai.tool.call.id"] for t in tools} == {
        m["call_id"] for m in client.of_type("tool_call")
    }


async def test_barge_in_interrupts_the_turn_and_the_next_turn_proceeds(start_service):
    svc = await start_service(
        scenario=Scenario(
            user_says=["Tell me a very long story about the lighthouse and the harbour.", "Stop."]
        )
    )
    session = await svc.create_session("dave")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("dave")) as client:
        await client.wait_for("session_started")
        await client.say(spoken(0.8))
        await client.wait_for("transcript", where=lambda m: m["role"] == "model")
        await client.say(spoken(0.5))
        interrupted = await client.wait_for("interrupted")
        second = await client.wait_for("turn_complete", where=lambda m: m["number"] == 2)
        await client.send("end")
        await client.wait_for("session_ended")
    first = next(m for m in client.of_type("turn_complete") if m["number"] == 1)
    assert interrupted["turn"] == 1
    assert first["end_reason"] == "interrupted" and first["interrupted"] is True
    assert second["end_reason"] == "completed"
    turns = by_name(session_spans(svc, session["id"]), "invoke_agent")
    reasons = sorted(t.attributes["voice.turn.end_reason"] for t in turns)
    assert reasons == ["completed", "interrupted"]


async def test_control_messages_reach_the_model(start_service):
    svc = await start_service()
    session = await svc.create_session("erin")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("erin")) as client:
        await client.wait_for("session_started")
        await client.say(speech_like(0.4))
        await client.send("audio_end")
        await client.wait_for("turn_complete")
        await client.send("playback", event="started", turn=1, played_ms=0)
        await client.send("playback", event="stopped", turn=1, played_ms=120.5)
        await client.send("end")
        await client.wait_for("session_ended")
    assert not client.of_type("error")
    sent = [
        entry
        for entry in svc.emulator.wire
        if entry.direction == "in" and isinstance(entry.message, dict)
    ]
    assert any(
        "audioStreamEnd" in str(e.message) or "audio_stream_end" in str(e.message) for e in sent
    )


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ('["a list"]', "bad_json"),
        ('{"type": "sing"}', "unknown_type"),
        ('{"type": "text", "text": 42}', "invalid_message"),
        ('{"type": "playback", "event": "paused", "turn": 1}', "invalid_message"),
        ('{"type": "text", "text": "hi", "extra": 1}', "invalid_message"),
        ('{"type": "text", "text": "   "}', "invalid_message"),
        ("[" * 60_000, "bad_json"),
        (b"\x01\x02\x03", "odd_audio_length"),
        (b"\x00" * 70_000, "frame_too_large"),
    ],
)
async def test_bad_frames_get_an_error_and_the_session_keeps_going(start_service, frame, code):
    svc = await start_service()
    session = await svc.create_session("frank")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("frank")) as client:
        await client.wait_for("session_started")
        await client.ws.send(frame)
        error = await client.wait_for("error")
        assert error["code"] == code and error["message"]
        await client.send("text", text="Still there?")
        assert (await client.wait_for("turn_complete"))["end_reason"] == "completed"


async def test_a_client_sending_garbage_is_closed_with_1008_and_the_session_ends(start_service):
    svc = await start_service(max_bad_frames=3)
    session = await svc.create_session("gina")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("gina")) as client:
        await client.wait_for("session_started")
        for _ in range(5):
            await client.ws.send("garbage")
        assert await client.wait_closed() == 1008
    assert client.of_type("session_ended")[0]["reason"] == "protocol_abuse"
    assert (await svc.get_session(session["id"], "gina"))["state"] == "ENDED"
    (root,) = by_name(session_spans(svc, session["id"]), "voice_session")
    assert root.attributes["voice.session.end_reason"] == "protocol_abuse"
    assert root.status.is_ok  # a misbehaving client is not a service error


async def test_a_flooding_client_is_closed_with_1008(start_service):
    svc = await start_service(max_frames_per_s=20)
    session = await svc.create_session("hal")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("hal")) as client:
        await client.wait_for("session_started")
        for _ in range(60):
            await client.ws.send(silence(0.02))
        assert await client.wait_closed() == 1008
    assert (await svc.get_session(session["id"], "hal"))["state"] == "ENDED"
    (root,) = by_name(session_spans(svc, session["id"]), "voice_session")
    assert root.attributes["voice.session.end_reason"] == "rate_limited"


@pytest.mark.parametrize(("size", "goodbye"), [(5_000, True), (200_000, False)])
async def test_a_frame_far_over_the_limit_closes_with_1009(start_service, size, goodbye):
    """Over 4× the limit the bridge says goodbye and closes 1009; past uvicorn's own cap the
    protocol layer closes 1009 by itself. Either way the session ends and its trace says why.
    (uvicorn's cap also leaves room for 4× the largest camera frame: kept small here.)"""
    svc = await start_service(max_frame_bytes=1_000, max_video_frame_bytes=1_024)
    session = await svc.create_session("ivy")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("ivy")) as client:
        await client.wait_for("session_started")
        await client.ws.send(b"\x00" * size)
        assert await client.wait_closed() == 1009
    ended = await wait_ended(svc, session["id"], "ivy")
    reason = "protocol_abuse" if goodbye else "client_disconnect"
    assert ended["end_reason"] == reason
    assert bool(client.of_type("session_ended")) is goodbye
    (root,) = by_name(session_spans(svc, session["id"]), "voice_session")
    assert root.attributes["voice.session.end_reason"] == reason


async def wait_ended(svc, session_id: str, user: str) -> dict:
    for _ in range(100):
        current = await svc.get_session(session_id, user)
        if current["state"] == "ENDED":
            return current
        await asyncio.sleep(0.05)
    raise AssertionError("session did not end")


@pytest.mark.parametrize("case", ["bad_token", "other_user", "unknown", "ended", "query_token_ok"])
async def test_websocket_refuses_before_any_audio_with_1008(start_service, case):
    svc = await start_service()
    session = await svc.create_session("judy")
    url, token = svc.ws_url(session["id"]), svc.token("judy")
    if case == "bad_token":
        token = token[:-3] + "xyz"
    elif case == "other_user":
        token = svc.token("mallory")
    elif case == "unknown":
        url = svc.ws_url("00000000-0000-0000-0000-000000000000")
    elif case == "ended":
        await svc.http.delete(
            f"/live-sessions/{session['id']}", headers={"Authorization": f"Bearer {token}"}
        )
    if case == "query_token_ok":
        import websockets

        async with websockets.connect(f"{url}?token={token}") as ws:
            assert '"session_started"' in await asyncio.wait_for(ws.recv(), 10)
        return
    async with VoiceClient.connect(url, token) as client:
        assert await client.wait_closed() == 1008
        assert not client.of_type("session_started")


async def test_a_second_connection_to_a_live_session_is_refused_and_harms_nothing(start_service):
    svc = await start_service()
    session = await svc.create_session("kim")
    url, token = svc.ws_url(session["id"]), svc.token("kim")
    async with VoiceClient.connect(url, token) as first, VoiceClient.connect(url, token) as second:
        codes = await asyncio.gather(
            first.wait_for("session_started"),
            second.wait_for("session_started"),
            return_exceptions=True,
        )
        winner, loser = (first, second) if isinstance(codes[1], Exception) else (second, first)
        assert sum(isinstance(c, Exception) for c in codes) == 1
        assert await loser.wait_closed() == 1008
        await winner.send("text", text="Still mine?")
        assert (await winner.wait_for("turn_complete"))["end_reason"] == "completed"
        assert (await svc.get_session(session["id"], "kim"))["state"] == "LIVE"


async def test_audio_streamed_far_faster_than_real_time_is_closed_with_1008(start_service):
    svc = await start_service(audio_burst_s=2.0, max_frame_bytes=64_000)
    session = await svc.create_session("lou")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("lou")) as client:
        await client.wait_for("session_started")
        await client.say(silence(1.5), frame_ms=500)  # within the burst: accepted
        await asyncio.sleep(0.1)
        assert not client.closed
        await client.say(silence(3.0), frame_ms=500)  # 4.5 s of audio in ~0.1 s: too fast
        assert await client.wait_closed() == 1008
    assert "real time" in client.close_reason
    assert client.of_type("session_ended")[0]["reason"] == "rate_limited"
