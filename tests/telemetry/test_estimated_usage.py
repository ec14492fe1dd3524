"""Turns Gemini reports no usage for are estimated when their generation goes out for good —
never earlier, so real usage that comes in time always wins, and never twice."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from voicetrace.telemetry import ModalityTokens, TurnSummary, UsageSnapshot
from voicetrace.telemetry import keys as k

from tests.telemetry.conftest import Traced, session_info

# Turn 1's real usage: 40 text + 50 audio in, 25 audio out (context after: text 40, audio 75).
USAGE = UsageSnapshot(
    prompt=90,
    response=25,
    total=115,
    prompt_details=(ModalityTokens("TEXT", 40), ModalityTokens("AUDIO", 50)),
    response_details=(ModalityTokens("AUDIO", 25),),
)


class Settled:
    def __init__(self) -> None:
        self.turns: list[TurnSummary] = []
        self.lock = threading.Lock()

    def __call__(self, summary: TurnSummary) -> None:
        with self.lock:
            self.turns.append(summary)

    def by_number(self) -> dict[int, TurnSummary]:
        with self.lock:
            return {t.number: t for t in self.turns}


def _spoken_turn(trace, usage: UsageSnapshot | None = None) -> None:
    trace.user_audio(1.0, voiced=True)  # 25 audio tokens in
    trace.model_audio(48_000)  # 1 s at 24 kHz: 25 audio tokens out
    if usage is not None:
        trace.usage(usage)
    trace.turn_complete()


def _chats(traced: Traced) -> dict[int, dict[str, object]]:
    return {int(s.attributes[k.TURN_NUMBER]): dict(s.attributes) for s in traced.named("chat")}


def test_estimates_carry_the_last_reported_context_and_then_their_own(traced: Traced) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _spoken_turn(trace, USAGE)
    _spoken_turn(trace)
    _spoken_turn(trace)
    summary = trace.end()
    turns = settled.by_number()
    assert [turns[n].usage_estimated for n in (1, 2, 3)] == [False, True, True]
    # Turn 2: context after turn 1 (text 40, audio 50 + 25) + 25 audio in; 25 audio out.
    assert turns[2].tokens_by_modality["input_text"] == 40
    assert turns[2].tokens_by_modality["input_audio"] == 75 + 25
    assert turns[2].output_tokens == 25
    # Turn 3 carries turn 2's estimate on top: its prompt, answer and its own input.
    assert turns[3].tokens_by_modality["input_audio"] == 100 + 25 + 25
    assert turns[3].input_tokens == 40 + 150
    chats = _chats(traced)
    for n in (2, 3):
        assert chats[n][k.USAGE_ESTIMATED] is True and chats[n][k.USAGE_MISSING] is True
        assert chats[n][k.LF_LEVEL] == k.LEVEL_WARNING
        assert chats[n][k.USAGE_INPUT_TOKENS] == turns[n].input_tokens
        assert Decimal(str(chats[n][k.COST_USD_DECIMAL])) == turns[n].cost_usd
    assert k.USAGE_ESTIMATED not in chats[1] and k.USAGE_MISSING not in chats[1]
    assert summary is not None
    assert summary.input_tokens == sum(t.input_tokens for t in turns.values())
    assert summary.cost_usd == sum((t.cost_usd or Decimal(0)) for t in turns.values())
    assert traced.tel.health()["usage_estimated"] == 2


def test_the_first_turn_without_usage_carries_the_system_prompt(traced: Traced) -> None:
    settled = Settled()
    prompt = "You are a helpful voice assistant."  # 34 characters: 9 tokens
    trace = traced.tel.start_session(session_info(system_prompt=prompt), on_turn_settled=settled)
    trace.user_text("hello there")  # 11 characters: 3 tokens
    trace.model_text("Hi!")  # a text part: 1 token
    trace.turn_complete()
    trace.end()
    (turn,) = settled.turns
    assert turn.usage_estimated
    assert turn.tokens_by_modality["input_text"] == 9 + 3
    assert turn.tokens_by_modality["output_text"] == 1


def test_usage_within_the_wait_is_used_and_nothing_is_estimated(traced: Traced) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _spoken_turn(trace)  # turn_complete without usage: an independent server's order
    time.sleep(0.05)  # inside usage_wait_s (0.2 s)
    trace.usage(USAGE)
    trace.end()
    (turn,) = settled.turns
    assert turn.usage_received and not turn.usage_estimated
    assert turn.input_tokens == 90 and turn.output_tokens == 25
    chat = _chats(traced)[1]
    assert k.USAGE_ESTIMATED not in chat and k.USAGE_LATE not in chat
    assert traced.tel.health()["usage_estimated"] == 0


def test_usage_after_the_wait_but_before_the_generation_is_final_replaces_any_estimate(
    traced: Traced,
) -> None:
    """Past the wait the turn span goes out; the generation still waits, and no estimate is
    made while it does: the late usage is the turn's only usage."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _spoken_turn(trace)
    time.sleep(0.35)  # past usage_wait_s
    assert settled.turns == []
    trace.usage(USAGE)
    trace.end()
    (turn,) = settled.turns
    assert turn.usage_received and not turn.usage_estimated and turn.input_tokens == 90
    chat = _chats(traced)[1]
    assert chat[k.USAGE_LATE] is True and k.USAGE_ESTIMATED not in chat


def test_usage_after_the_estimate_went_out_is_counted_and_never_added(traced: Traced) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _spoken_turn(trace)
    summary = trace.end()
    trace.usage(USAGE)  # too late: the estimate is final everywhere
    (turn,) = settled.turns
    assert turn.usage_estimated and turn.input_tokens == 25
    assert summary is not None and summary.input_tokens == 25
    health = traced.tel.health()
    assert health["usage_after_estimate"] == 1 and health["usage_ignored"] == 1
    (chat,) = _chats(traced).values()
    assert chat[k.USAGE_INPUT_TOKENS] == 25


def test_text_is_counted_without_content_capture_and_transcripts_are_not_billed(
    traced: Traced,
) -> None:
    """Content capture is off (the fixture): no text is kept, yet typed text and text parts
    count; transcripts of audio are not billed again."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    trace.user_text("What is the weather like?")  # 25 characters: 7 tokens
    trace.model_text("thinking hard", thought=True)  # thoughts: not known, not counted
    trace.model_audio(24_000)  # 0.5 s: 12.5 → 13 tokens
    trace.output_transcript("It is sunny.")
    trace.turn_complete()
    trace.end()
    (turn,) = settled.turns
    assert turn.tokens_by_modality["input_text"] == 7 and turn.input_tokens == 7
    assert turn.tokens_by_modality["output_audio"] == 13 and turn.output_tokens == 13


def test_a_turn_the_model_never_answered_is_not_estimated(traced: Traced) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    trace.user_audio(1.0, voiced=True)
    summary = trace.end()
    assert [t.usage_estimated for t in settled.turns] == [False]
    assert summary is not None and summary.input_tokens == 0
    assert traced.named("chat") == []


def test_once_a_later_turn_finished_the_estimate_is_made_at_the_wait_not_at_the_end(
    traced: Traced,
) -> None:
    """Gemini skipped usage for turn 1 (interrupted) and reported turn 2's: a snapshot from now
    on belongs to turn 2 or later, so turn 1 is estimated when its wait is over — budgets and
    the ledger count it during the session, not at its end."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _spoken_turn(trace)
    _spoken_turn(trace, USAGE)
    assert [t.number for t in settled.turns] == [2]
    deadline = time.monotonic() + 2.0
    while 1 not in settled.by_number() and time.monotonic() < deadline:
        time.sleep(0.02)
    turn = settled.by_number().get(1)
    assert turn is not None and turn.usage_estimated and not trace.ended
    assert turn.input_tokens == 25 and turn.output_tokens == 25  # no context known before it
    trace.end()
    assert sorted(t.number for t in settled.turns) == [1, 2]


def test_the_latest_turn_without_usage_keeps_waiting_for_it(traced: Traced) -> None:
    """Past the wait, but no later turn finished: its usage may still come (an independent
    server sends it after `turnComplete`, at its own pace), so nothing is estimated yet."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _spoken_turn(trace, USAGE)
    _spoken_turn(trace)
    time.sleep(0.35)
    assert [t.number for t in settled.turns] == [1]
    trace.usage(USAGE)
    assert [(t.number, t.usage_estimated) for t in settled.turns] == [(1, False), (2, False)]
    trace.end()


def test_a_model_without_a_price_entry_is_priced_by_the_fallback_and_flagged(
    traced: Traced,
) -> None:
    trace = traced.tel.start_session(session_info(model="acme-live-unlisted"))
    _spoken_turn(trace, USAGE)
    trace.end()
    (chat,) = _chats(traced).values()
    assert chat[k.COST_ESTIMATED] is True and Decimal(str(chat[k.COST_USD_DECIMAL])) > 0
    assert k.USAGE_ESTIMATED not in chat


def test_a_listed_model_is_not_flagged_as_estimated_cost(traced: Traced) -> None:
    trace = traced.tel.start_session(session_info())
    _spoken_turn(trace, USAGE)
    trace.end()
    (chat,) = _chats(traced).values()
    assert k.COST_ESTIMATED not in chat


def test_an_estimated_turn_bills_the_frames_forwarded_since_and_splits_them_by_source(
    traced: Traced,
) -> None:
    """Frames join the context as they arrive (the emulator's rule): turn 2 re-bills turn 1's
    three frames (its reported 210 image tokens) and adds its own three at 70 each; its image
    tokens are split by source, so camera + screen == image holds for the turn and session."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    for _ in range(3):
        trace.video_frame("camera", 70)
    image = (ModalityTokens("TEXT", 40), ModalityTokens("AUDIO", 50), ModalityTokens("IMAGE", 210))
    _spoken_turn(
        trace,
        UsageSnapshot(
            prompt=300,
            response=25,
            total=325,
            prompt_details=image,
            response_details=(ModalityTokens("AUDIO", 25),),
        ),
    )
    for _ in range(2):
        trace.video_frame("camera", 70)
    trace.video_frame("screen", 70)
    _spoken_turn(trace)  # no usage: estimated
    summary = trace.end()
    turns = settled.by_number()
    assert turns[2].usage_estimated
    assert turns[2].tokens_by_modality["input_image"] == 210 + 3 * 70
    # 5 camera and 1 screen frame in the context: 420 × 5/6 to the camera, the rest to screen.
    assert (turns[2].camera_tokens, turns[2].screen_tokens) == (350, 70)
    chat = _chats(traced)[2]
    assert chat[k.usage_modality_key("image", "input")] == 420
    assert chat[k.USAGE_CAMERA_TOKENS] == 350 and chat[k.USAGE_SCREEN_TOKENS] == 70
    assert summary is not None
    assert summary.tokens_by_modality["input_image"] == 210 + 420
    assert (summary.camera_tokens, summary.screen_tokens) == (210 + 350, 70)
    assert (
        summary.camera_tokens + summary.screen_tokens == summary.tokens_by_modality["input_image"]
    )


def test_a_frame_after_the_reported_usage_is_billed_to_the_next_estimate(traced: Traced) -> None:
    """A frame forwarded after turn 1's usage came (turn 1 still open) is not in its prompt,
    but in the context turn 2 re-bills."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    trace.user_audio(1.0, voiced=True)
    trace.model_audio(48_000)
    trace.usage(USAGE)
    trace.video_frame("screen", 258)
    trace.turn_complete()
    _spoken_turn(trace)
    trace.end()
    turns = settled.by_number()
    assert turns[2].usage_estimated and turns[2].tokens_by_modality["input_image"] == 258
    assert (turns[2].camera_tokens, turns[2].screen_tokens) == (0, 258)
