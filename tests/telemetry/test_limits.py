"""What a misbehaving client can make the tracer keep is bounded."""

from __future__ import annotations

from voicetrace.telemetry import UsageSnapshot
from voicetrace.telemetry.turns import MAX_TURN_EVENTS

from tests.telemetry.conftest import Traced, session_info


def test_repeated_control_frames_cannot_grow_a_turns_events_without_bound(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_text("hello")
    s.model_audio(4800)
    for _ in range(5_000):  # a client repeating `playback stopped` / `audio_end` forever
        s.playback(1, "stopped", 100.0)
        s.audio_stream_end()
    s.usage(UsageSnapshot(prompt=10, response=5, total=15))
    s.turn_complete()
    s.end("completed")
    turn = traced.one("invoke_agent")
    assert 0 < len(turn.events) <= MAX_TURN_EVENTS
    assert turn.attributes["voice.turn.end_reason"] == "completed"
