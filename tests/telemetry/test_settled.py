"""`on_turn_settled`: once per turn, when its usage is final, with the `chat` span's numbers."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from voicetrace.telemetry import TurnSummary, UsageSnapshot
from voicetrace.telemetry import keys as k

from tests.telemetry.conftest import Traced, session_info

USAGE = UsageSnapshot(prompt=100, response=40, total=140)


class Settled:
    def __init__(self) -> None:
        self.turns: list[TurnSummary] = []
        self.threads: list[str] = []
        self.done = threading.Event()

    def __call__(self, summary: TurnSummary) -> None:
        self.turns.append(summary)
        self.threads.append(threading.current_thread().name)
        self.done.set()


def _turn(trace, usage: UsageSnapshot | None = None) -> TurnSummary | None:
    trace.user_text("hello")
    trace.model_audio(4_800)
    if usage is not None:
        trace.usage(usage)
    return trace.turn_complete()


def test_usage_before_turn_complete_settles_the_turn_at_once(traced: Traced) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _turn(trace, USAGE)
    assert [t.number for t in settled.turns] == [1]
    (summary,) = settled.turns
    chat = traced.one("chat").attributes
    assert summary.usage_received and summary.input_tokens == chat[k.USAGE_INPUT_TOKENS] == 100
    assert summary.cost_usd == Decimal(chat[k.COST_USD_DECIMAL])
    trace.end()
    assert len(settled.turns) == 1  # never twice


def test_usage_after_turn_complete_settles_the_turn_with_that_usage(traced: Traced) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    provisional = _turn(trace)
    assert provisional is not None and not provisional.usage_received
    assert settled.turns == []  # not settled: usage may still come
    trace.usage(USAGE)
    (summary,) = settled.turns
    assert summary.usage_received and summary.input_tokens == 100 and summary.cost_usd
    trace.end()
    assert len(settled.turns) == 1


def test_a_turn_whose_usage_never_comes_is_settled_at_the_end_with_an_estimate(
    traced: Traced,
) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    _turn(trace)
    time.sleep(0.3)  # past usage_wait_s: the turn span goes out, the generation still waits
    assert settled.turns == []
    summary = trace.end()
    (turn,) = settled.turns
    # "hello" → 2 text tokens in; 4,800 bytes at 24 kHz = 100 ms → 2.5 → 3 audio tokens out
    assert not turn.usage_received and turn.usage_estimated
    assert (turn.input_tokens, turn.output_tokens) == (2, 3) and turn.cost_usd
    assert summary is not None and summary.input_tokens == 2 and summary.cost_usd == turn.cost_usd
    chat = traced.one("chat").attributes
    assert chat[k.USAGE_ESTIMATED] is True and chat[k.USAGE_MISSING] is True
    assert Decimal(chat[k.COST_USD_DECIMAL]) == turn.cost_usd


def test_a_failing_callback_is_counted_and_never_raises(traced: Traced) -> None:
    def broken(_summary: TurnSummary) -> None:
        raise RuntimeError("app bug")

    trace = traced.tel.start_session(session_info(), on_turn_settled=broken)
    assert _turn(trace, USAGE) is not None
    assert trace.end() is not None
    assert traced.tel.health()["tracer_errors"] >= 1


def test_turns_beyond_the_deferred_window_are_settled_with_estimates_oldest_first(
    traced: Traced,
) -> None:
    """A session whose server never reports usage must not hold every turn open: beyond the
    outbox's window of deferred generations the oldest turns settle (estimated)."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    for _ in range(6):  # more finished turns without usage than the outbox defers
        _turn(trace)
        time.sleep(0.25)  # past usage_wait_s each time
    _turn(trace)
    assert settled.done.wait(2.0)
    assert [t.number for t in settled.turns][:2] == [1, 2]
    assert not any(t.usage_received for t in settled.turns)
    assert all(t.usage_estimated for t in settled.turns)
    trace.end()
    assert sorted(t.number for t in settled.turns) == [1, 2, 3, 4, 5, 6, 7]


def test_a_cut_turn_waits_for_what_the_client_heard_before_its_generation_goes_out(
    traced: Traced,
) -> None:
    """A browser's `playback stopped` comes one round trip after `interrupted`, after the
    server's `turn_complete`: the generation waits for it (bounded), so its heard/unheard audio
    is the client's, not an estimate."""
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    trace.user_text("tell me a long story")
    trace.model_audio(48_000)  # 1 s of model audio
    trace.playback(1, "started", 0.0)
    trace.interrupted()
    trace.usage(USAGE)
    trace.turn_complete()
    assert settled.turns == []  # waiting for the client's mark
    trace.playback(1, "stopped", 400.0)
    (turn,) = settled.turns
    assert turn.heard_ms == 400.0 and turn.interrupted
    chat = traced.one("chat").attributes
    assert chat[k.AUDIO_HEARD_MS] == 400.0 and chat[k.AUDIO_HEARD_SOURCE] == "playback"
    trace.end()


def test_a_cut_turn_whose_mark_never_comes_goes_out_at_the_usage_deadline(
    traced: Traced,
) -> None:
    settled = Settled()
    trace = traced.tel.start_session(session_info(), on_turn_settled=settled)
    trace.user_text("tell me a long story")
    trace.model_audio(48_000)
    trace.playback(1, "started", 0.0)
    trace.interrupted()
    trace.usage(USAGE)
    trace.turn_complete()
    assert settled.done.wait(2.0)  # usage_wait_s is 0.2 s here
    chat = traced.one("chat").attributes
    assert chat[k.AUDIO_HEARD_SOURCE] == "estimate"
    trace.end()
