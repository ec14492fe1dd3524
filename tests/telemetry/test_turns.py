"""Turns from Gemini's own signals: numbering, barge-in, model-initiated turns, latency phases."""

from __future__ import annotations

import time

import pytest
from voicetrace.telemetry import UsageSnapshot
from voicetrace.telemetry import keys as k

from tests.telemetry.conftest import Traced, session_info

MS = 1_000_000


def _spoken_turn(s, t0: int, speech_ms: int = 600, gap_ms: int = 400, reply_ms: int = 800) -> None:
    """Voiced frames, then silence (server VAD ends the turn), then model audio."""
    for i in range(0, speech_ms + 1, 20):
        s.user_audio(0.02, voiced=True, at_ns=t0 + i * MS)
    for i in range(speech_ms + 20, speech_ms + gap_ms, 20):
        s.user_audio(0.02, voiced=False, at_ns=t0 + i * MS)
    first = t0 + (speech_ms + gap_ms) * MS
    for i in range(0, reply_ms + 1, 100):
        s.model_audio(4800, at_ns=first + i * MS)


def test_server_vad_only_numbers_every_turn(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    t0 = time.time_ns()
    numbers = []
    for n in range(3):
        _spoken_turn(s, t0 + n * 5_000 * MS)
        numbers.append(s.current_turn)
        s.usage(UsageSnapshot(prompt=100 * (n + 1), response=50))
        summary = s.turn_complete()
        assert summary is not None and summary.number == n + 1
    s.end()
    assert numbers == [1, 2, 3]
    turns = sorted(traced.named("invoke_agent"), key=lambda sp: sp.attributes[k.TURN_NUMBER])
    assert [sp.attributes[k.TURN_NUMBER] for sp in turns] == [1, 2, 3]
    assert all(sp.attributes[k.TURN_END_REASON] == "completed" for sp in turns)
    assert s.turns == 3


def test_silence_alone_never_opens_a_turn(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    for _ in range(50):
        s.user_audio(0.02, voiced=False)
    assert s.current_turn is None
    summary = s.end()
    assert summary.turns == 0 and summary.audio_in_s == pytest.approx(1.0)
    assert traced.named("invoke_agent") == []


def test_phases_are_contiguous_and_sum_exactly_to_total(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    t0 = time.time_ns()
    _spoken_turn(s, t0, speech_ms=600, gap_ms=400, reply_ms=800)
    summary = s.turn_complete()
    assert summary.user_speech_ms == 600.0
    assert summary.endpointing_ms == 400.0
    assert summary.response_ms == 800.0
    assert summary.total_ms == summary.user_speech_ms + summary.endpointing_ms + summary.response_ms
    assert summary.ttfa_ms == 400.0
    s.end()
    turn = traced.one("invoke_agent").attributes
    assert turn[k.TURN_TOTAL_MS] == (
        turn[k.TURN_USER_SPEECH_MS] + turn[k.TURN_ENDPOINTING_MS] + turn[k.TURN_RESPONSE_MS]
    )
    chat = traced.one("chat")
    assert chat.attributes[k.RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.4)
    # the generation spans end of user speech → last audio
    assert chat.start_time == t0 + 600 * MS and chat.end_time == t0 + 1800 * MS


def test_tool_time_is_inside_the_response_phase(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_text("where is coffee?")
    s.tool_call("c1", "search", {"q": "coffee"})
    time.sleep(0.03)
    s.tool_result("c1", {"ok": True})
    s.model_audio(4800)
    summary = s.turn_complete()
    assert summary.tool_ms >= 30.0
    assert summary.response_ms >= summary.tool_ms
    assert summary.ttfa_ms >= 30.0  # first audio came after the tool
    assert summary.user_speech_ms == 0.0  # typed turn
    assert summary.trigger == "user_text"
    s.end()


def test_barge_in_cuts_the_turn_and_opens_the_next(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    t0 = time.time_ns()
    s.user_audio(0.02, voiced=True, at_ns=t0)
    s.model_audio(48000, at_ns=t0 + 500 * MS)  # 1 s of audio generated
    s.user_audio(0.02, voiced=True, at_ns=t0 + 800 * MS)  # user talks over it
    assert s.current_turn == 1  # the cut turn still awaits the server's turn_complete
    s.interrupted()
    s.usage(UsageSnapshot(prompt=500, response=25))
    first = s.turn_complete()
    assert first.number == 1 and first.end_reason == "interrupted" and first.interrupted
    assert s.current_turn == 2
    s.model_audio(4800)
    s.usage(UsageSnapshot(prompt=600, response=10))
    second = s.turn_complete()
    assert second.number == 2 and second.end_reason == "completed"
    summary = s.end()
    assert summary.interruptions == 1 and summary.turns == 2
    turns = {sp.attributes[k.TURN_NUMBER]: sp for sp in traced.named("invoke_agent")}
    assert turns[1].attributes[k.TURN_INTERRUPTED] is True
    assert turns[1].attributes[k.LF_LEVEL] == "DEFAULT"  # barge-in is normal conversation
    assert k.EV_BARGE_IN in [e.name for e in turns[1].events]
    chat1 = next(c for c in traced.named("chat") if c.attributes[k.TURN_NUMBER] == 1)
    # heard ≈ from first audio to the cut (300 ms) out of 1000 ms generated
    assert chat1.attributes[k.AUDIO_HEARD_MS] == pytest.approx(300.0)
    assert chat1.attributes[k.AUDIO_UNHEARD_MS] == pytest.approx(700.0)
    assert chat1.attributes[k.AUDIO_HEARD_SOURCE] == "estimate"
    assert chat1.attributes[k.RESPONSE_FINISH_REASONS] == ("interrupted",)


def test_server_interruption_without_local_voice_still_closes_the_turn(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_text("tell me a story")
    s.model_audio(4800)
    s.interrupted()
    assert s.current_turn == 1
    summary = s.turn_complete()
    assert summary.end_reason == "interrupted"
    assert s.current_turn is None
    s.end()


def test_model_output_without_a_user_turn_opens_a_model_turn(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_text("remind me later")
    s.tool_call("c1", "reminder", {}, non_blocking=True)
    s.model_audio(960)
    s.generation_complete()
    first = s.turn_complete()  # NON_BLOCKING: turn completes before the result
    s.tool_result("c1", {"done": True}, duration_s=0.5)  # WHEN_IDLE result, no open turn
    s.model_audio(4800)  # the model speaks on its own
    assert s.current_turn == 2
    second = s.turn_complete()
    s.end()
    assert first.number == 1 and second.number == 2 and second.trigger == "model"
    tool = traced.one("execute_tool")
    turn1 = next(t for t in traced.named("invoke_agent") if t.attributes[k.TURN_NUMBER] == 1)
    # the late non-blocking result still lands under the turn that called it
    assert tool.parent.span_id == turn1.context.span_id
    assert tool.attributes[k.TOOL_STATUS] == "ok" and tool.attributes[k.TOOL_NON_BLOCKING]


def test_playback_marks_give_perceived_latency_and_heard_audio(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    t0 = time.time_ns()
    s.user_audio(0.02, voiced=True, at_ns=t0)
    s.model_audio(48000, at_ns=t0 + 300 * MS)
    s.playback(1, "started", 0.0, at_ns=t0 + 450 * MS)
    s.playback(1, "stopped", 640.0, at_ns=t0 + 1100 * MS)
    s.usage(UsageSnapshot(prompt=10, response=25))
    summary = s.turn_complete()
    assert summary.heard_ms == 640.0
    s.end()
    turn = traced.one("invoke_agent").attributes
    assert turn[k.TURN_PERCEIVED_LATENCY_MS] == 450.0
    assert turn[k.obs_metadata("perceived_latency_ms")] == 450.0
    chat = traced.one("chat").attributes
    assert chat[k.AUDIO_HEARD_MS] == 640.0 and chat[k.AUDIO_HEARD_SOURCE] == "playback"


def test_playback_after_emission_still_feeds_metrics(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_text("hi")
    s.model_audio(4800)
    s.usage(UsageSnapshot(prompt=10, response=5))
    s.turn_complete()  # emitted now (usage was there)
    s.playback(1, "started", 0.0)
    s.end()
    points = traced.metrics()["voice.turn.perceived_latency"]
    assert sum(p.count for p in points) == 1


def test_open_turn_at_disconnect_ends_with_the_session_reason(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_audio(0.02, voiced=True)
    s.model_audio(960)
    s.end("client_disconnect")
    turn = traced.one("invoke_agent").attributes
    assert turn[k.TURN_END_REASON] == "client_disconnect"
    chat = traced.one("chat").attributes
    assert chat[k.USAGE_MISSING] is True and chat[k.LF_LEVEL] == "WARNING"


def test_turn_complete_without_a_turn_returns_none(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    assert s.turn_complete() is None
    s.end()
