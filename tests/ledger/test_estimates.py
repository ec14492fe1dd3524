"""Usage estimation for a turn Gemini reported none for: documented rates (25 audio tokens per
second, ~4 characters per text token) on what was streamed, plus the context carried in."""

from __future__ import annotations

from voicetrace.telemetry import PriceTable, UsageSnapshot
from voicetrace.telemetry.estimates import context_after, estimate_usage
from voicetrace.telemetry.turns import TurnRecord
from voicetrace.telemetry.usage import UsageBreakdown


def _turn(**kw: object) -> TurnRecord:
    t = TurnRecord(number=2, trigger="user_audio", start_ns=0)
    for name, value in kw.items():
        setattr(t, name, value)
    return t


def test_estimate_bills_streamed_audio_text_and_the_carried_context() -> None:
    t = _turn(audio_in_s=2.0, audio_out_ms=1500.0, user_text=["hello world"], output_text=["ok"])
    u = estimate_usage(t, context_tokens=100)
    # 2 s in → 50 audio tokens; "hello world" → 3; 1.5 s out → ceil(37.5) = 38; "ok" → 1
    assert u.prompt == 100 + 50 + 3 and u.response == 38 + 1
    split = UsageBreakdown.from_snapshot(u)
    assert split.input_uncached == {"text": 103, "audio": 50, "image": 0}
    assert split.output == {"text": 1, "audio": 38, "image": 0}
    cost = PriceTable.load(None).cost("gemini-3.8-live", split)
    assert cost is not None and cost.total > 0


def test_an_estimate_never_goes_below_what_was_streamed() -> None:
    silent = estimate_usage(_turn(audio_in_s=0.01, audio_out_ms=1.0), context_tokens=-5)
    assert silent.prompt == 1 and silent.response == 1  # partial seconds round up, never 0


def test_the_next_turn_carries_prompt_and_answer_but_not_thinking() -> None:
    real = UsageBreakdown.from_snapshot(
        UsageSnapshot(prompt=300, cached=100, response=40, tool_use_prompt=20, thoughts=7)
    )
    assert context_after(real) == 300 + 40
