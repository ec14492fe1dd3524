"""Usage: last snapshot per turn, late usage on the right turn, never doubled; exact cost."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from voicetrace.telemetry import ModalityTokens, PriceTable, UsageSnapshot
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.usage import UsageBreakdown

from tests.telemetry.conftest import Traced, session_info

M = Decimal(1_000_000)


def _chat(traced: Traced, turn: int):
    return next(c for c in traced.named("chat") if c.attributes[k.TURN_NUMBER] == turn)


def test_last_usage_snapshot_of_a_turn_wins_and_is_never_summed(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_text("hi")
    s.model_audio(4800)
    s.usage(UsageSnapshot(prompt=100, response=10))
    s.usage(UsageSnapshot(prompt=100, response=40))  # Gemini re-sends a grown snapshot
    s.turn_complete()
    summary = s.end()
    chat = traced.one("chat").attributes
    assert chat[k.USAGE_INPUT_TOKENS] == 100 and chat[k.USAGE_OUTPUT_TOKENS] == 40
    assert summary.output_tokens == 40


def test_prompt_tokens_are_summed_across_turns(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    for prompt in (100, 250):
        s.user_text("again")
        s.model_audio(960)
        s.usage(UsageSnapshot(prompt=prompt, response=5))
        s.turn_complete()
    summary = s.end()
    assert summary.input_tokens == 350  # the whole context is re-billed every turn


def test_late_usage_lands_on_its_turn_not_the_next(traced_factory) -> None:
    traced = traced_factory(usage_wait_s=5.0)
    s = traced.tel.start_session(session_info())
    s.user_text("first")
    s.model_audio(960)
    first = s.turn_complete()  # usage not there yet
    assert first.usage_received is False
    assert traced.named("chat") == []  # the generation waits for its usage
    s.user_audio(0.02, voiced=True)  # the next turn opens…
    s.usage(UsageSnapshot(prompt=111, response=11))  # …and turn 1's usage arrives
    s.model_audio(960)
    s.usage(UsageSnapshot(prompt=222, response=22))
    s.turn_complete()
    s.end()
    assert _chat(traced, 1).attributes[k.USAGE_INPUT_TOKENS] == 111
    assert _chat(traced, 2).attributes[k.USAGE_INPUT_TOKENS] == 222
    assert len(traced.named("chat")) == 2


def test_usage_after_the_wait_still_reaches_the_generation_once(traced_factory) -> None:
    traced = traced_factory(usage_wait_s=0.05)
    s = traced.tel.start_session(session_info())
    s.user_text("hello")
    s.model_audio(960)
    s.turn_complete()
    deadline = time.monotonic() + 2
    while not traced.named("invoke_agent") and time.monotonic() < deadline:
        time.sleep(0.01)  # the reaper emits the turn at its deadline
    assert traced.named("invoke_agent"), "turn span not emitted after usage_wait_s"
    assert traced.named("chat") == []
    s.usage(UsageSnapshot(prompt=70, response=7))
    s.usage(UsageSnapshot(prompt=80, response=8))  # the generation already went out: ignored
    s.end()
    chats = traced.named("chat")
    assert len(chats) == 1
    assert chats[0].attributes[k.USAGE_INPUT_TOKENS] == 70
    assert chats[0].attributes[k.USAGE_LATE] is True
    assert chats[0].parent.span_id == traced.one("invoke_agent").context.span_id
    assert traced.tel.health()["usage_late"] == 1
    assert traced.tel.health()["usage_ignored"] == 1


def test_usage_details_do_not_overlap_and_total_is_their_sum() -> None:
    u = UsageSnapshot(
        prompt=1000,
        cached=300,
        response=400,
        tool_use_prompt=60,
        thoughts=25,
        total=1485,
        prompt_details=(
            ModalityTokens("TEXT", 200),
            ModalityTokens("AUDIO", 700),
            ModalityTokens("VIDEO", 50),
        ),
        cache_details=(ModalityTokens("AUDIO", 250), ModalityTokens("TEXT", 50)),
        response_details=(ModalityTokens("AUDIO", 380), ModalityTokens("TEXT", 20)),
        tool_use_prompt_details=(ModalityTokens("TEXT", 60),),
    )
    b = UsageBreakdown.from_snapshot(u)
    d = b.details()
    assert d == {
        "input_text_tokens": 150 + 50,  # 200 - 50 cached, + 50 undetailed prompt tokens
        "input_audio_tokens": 450,
        "input_image_tokens": 50,
        "input_cached_tokens": 300,
        "input_tool_use_tokens": 60,
        "output_text_tokens": 20,
        "output_audio_tokens": 380,
        "output_image_tokens": 0,
        "output_reasoning_tokens": 25,
        "total": 1485,
    }
    assert d["total"] == sum(v for key, v in d.items() if key != "total")
    assert all(key.startswith(("input", "output")) for key in d if key != "total")
    # the billable input = prompt + tool-use prompt; output = response + thinking
    assert b.input_tokens == 1060 and b.output_tokens == 425


def test_inconsistent_details_are_clamped_to_the_reported_counts() -> None:
    u = UsageSnapshot(
        prompt=100,
        response=10,
        prompt_details=(ModalityTokens("AUDIO", 150),),
        response_details=(ModalityTokens("AUDIO", 30),),
    )
    d = UsageBreakdown.from_snapshot(u).details()
    assert d["input_audio_tokens"] + d["input_text_tokens"] == 100
    assert d["output_audio_tokens"] == 10 and d["total"] == 110


def test_cost_is_exact_decimal_against_the_price_table(traced: Traced) -> None:
    u = UsageSnapshot(
        prompt=1000,
        cached=100,
        response=500,
        tool_use_prompt=40,
        thoughts=30,
        prompt_details=(ModalityTokens("TEXT", 300), ModalityTokens("AUDIO", 700)),
        cache_details=(ModalityTokens("TEXT", 100),),
        response_details=(ModalityTokens("AUDIO", 480), ModalityTokens("TEXT", 20)),
    )
    # gemini-3.8-live: text in 0.75, audio in 3.00, text out 4.50, audio out 12.00 per 1M;
    # cached bills at its modality's input price, thinking as text output.
    expected = (
        200 * Decimal("0.75")
        + 700 * Decimal("3.00")
        + 100 * Decimal("0.75")
        + 40 * Decimal("0.75")
        + 20 * Decimal("4.50")
        + 480 * Decimal("12.00")
        + 30 * Decimal("4.50")
    ) / M
    cost = PriceTable.load(None).cost("gemini-3.8-live", UsageBreakdown.from_snapshot(u))
    assert cost is not None and cost.total == expected
    s = traced.tel.start_session(session_info())
    s.user_text("price me")
    s.model_audio(960)
    s.usage(u)
    summary = s.turn_complete()
    session = s.end()
    chat = traced.one("chat").attributes
    assert Decimal(chat[k.COST_USD_DECIMAL]) == expected
    assert chat[k.COST_USD] == float(expected)
    assert summary.cost_usd == session.cost_usd == expected  # Decimal, exact
    details = json.loads(chat[k.LF_COST_DETAILS])
    usage_keys = set(json.loads(chat[k.LF_USAGE_DETAILS]))
    assert set(details) == usage_keys  # cost keys match usage keys, total included
    assert details["total"] == pytest.approx(float(expected))
    assert details["output_audio_tokens"] == pytest.approx(480 * 12 / 1e6)


def test_model_families_match_by_pattern_and_unknown_models_bill_at_the_fallback() -> None:
    table = PriceTable.load(None)
    assert table.lookup("models/gemini-2.5-flash-native-audio-preview-09-2025").name == (
        "gemini-2.5-flash-native-audio-*"
    )
    assert table.lookup("gemini-3.8-live").name == "gemini-3.8-live"
    assert table.lookup("gemini-3.8-live-extended-thinking").name == "gemini-3.8-live-*"
    assert table.lookup("gpt-4o-realtime") is None
    cost = table.cost("gpt-4o-realtime", UsageBreakdown.from_snapshot(UsageSnapshot(prompt=1)))
    assert cost is not None and cost.estimated and cost.model == "fallback"
    assert cost.total > 0  # never silently free


def test_operator_price_file_overrides_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "as_of": "2027-01-01",
                "models": {
                    "gemini-3.8-live": {
                        "input": {"text": "1.00", "audio": "4.00"},
                        "cached_input": "0.10",
                        "output": {"text": "5.00", "audio": "15.00"},
                    },
                    "my-model": {"input": {"text": "1"}, "output": {"text": "2"}},
                },
            }
        )
    )
    table = PriceTable.load(path)
    assert table.lookup("gemini-3.8-live").input["audio"] == Decimal("4.00")
    assert table.lookup("my-model") is not None
    assert table.lookup("gemini-2.0-flash-live-001") is not None  # packaged ones stay
    assert table.as_of == "2027-01-01"
    cost = table.cost(
        "gemini-3.8-live", UsageBreakdown.from_snapshot(UsageSnapshot(prompt=1000, cached=1000))
    )
    assert cost.details["input_cached_tokens"] == Decimal("0.0001")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"models": {"m": {"input": {"text": "-1"}, "output": {"text": "1"}}}}', "non-negative"),
        ('{"models": {"m": {"output": {"text": "1"}}}}', "missing 'input'"),
        ('{"models": []}', "'models' object"),
    ],
)
def test_bad_price_file_gets_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        PriceTable.load(path)


def test_missing_price_file_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read price file"):
        PriceTable.load(tmp_path / "absent.json")


def test_unheard_audio_of_an_interrupted_turn_is_priced(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    t0 = time.time_ns()
    s.user_audio(0.02, voiced=True, at_ns=t0)
    s.model_audio(96000, at_ns=t0 + 100_000_000)  # 2 s generated
    s.playback(1, "stopped", 500.0)  # the client played 0.5 s
    s.interrupted()
    s.usage(UsageSnapshot(prompt=100, response=50, response_details=(ModalityTokens("AUDIO", 50),)))
    s.turn_complete()
    s.end()
    chat = traced.one("chat").attributes
    assert chat[k.AUDIO_UNHEARD_MS] == 1500.0
    # 75 % of 50 audio tokens at 12 USD / 1M
    assert chat[k.AUDIO_UNHEARD_COST_USD] == pytest.approx(float(Decimal("37.5") * 12 / M))
