"""Usage estimation for a turn Gemini reported none for: documented rates (25 audio tokens per
second, ~4 characters per text token) on what was streamed, plus the context carried in.

The emulator bills by the same documented rules (`voicetrace.emulator.usage`), so the estimate
of a turn must equal, to the token, the `usageMetadata` the emulator would have sent for it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from voicetrace.emulator.usage import (
    INPUT_RATE,
    OUTPUT_RATE,
    Context,
    TurnUsage,
    audio_tokens,
    frame_tokens,
    response_tokens,
    text_tokens,
)
from voicetrace.telemetry import ModalityTokens, PriceTable, UsageSnapshot
from voicetrace.telemetry.estimates import context_after, estimate_usage
from voicetrace.telemetry.turns import ToolRecord, TurnRecord
from voicetrace.telemetry.usage import UsageBreakdown


def _turn(**kw: object) -> TurnRecord:
    t = TurnRecord(number=2, trigger="user_audio", start_ns=0)
    for name, value in kw.items():
        setattr(t, name, value)
    return t


MODEL = "gemini-3.8-live"


def _details(details: tuple[ModalityTokens, ...]) -> dict[str, int]:
    return {d.modality: d.tokens for d in details if d.tokens}


def _wire(usage: dict[str, Any], key: str) -> dict[str, int]:
    return {d["modality"]: d["tokenCount"] for d in usage.get(key, [])}


def _snapshot_details(usage: dict[str, Any], key: str) -> tuple[ModalityTokens, ...]:
    return tuple(ModalityTokens(m, n) for m, n in _wire(usage, key).items())


chunks = st.lists(st.integers(min_value=1, max_value=8_000), max_size=40)
texts = st.lists(st.text(max_size=60), max_size=4)
responses = st.lists(
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=4),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(
    chunks_in=chunks,
    chunks_out=chunks,
    typed=texts,
    parts=texts,
    tool_results=responses,
    context_text=st.integers(min_value=0, max_value=50_000),
    context_audio=st.integers(min_value=0, max_value=50_000),
    context_frames=st.integers(min_value=0, max_value=200),
    new_frames=st.integers(min_value=0, max_value=60),
    resolution=st.sampled_from([None, "LOW", "MEDIUM", "HIGH"]),
    model=st.sampled_from([MODEL, "gemini-2.5-flash-native-audio"]),
)
def test_the_estimate_is_what_the_emulator_bills_for_the_same_turn(
    chunks_in: list[int],
    chunks_out: list[int],
    typed: list[str],
    parts: list[str],
    tool_results: list[dict[str, object]],
    context_text: int,
    context_audio: int,
    context_frames: int,
    new_frames: int,
    resolution: str | None,
    model: str,
) -> None:
    """Audio in and out as the session records it (a float sum of chunk durations, as the
    bridge reports each frame), typed text and text parts counted per piece, blocking tool
    responses as tool-use prompt, the carried context, and the frames forwarded since it was
    billed (they join the emulator's context as they arrive): every emulator token accounted
    for."""
    t = _turn()
    for samples in chunks_in:  # the bridge: seconds = bytes / 2 / 16 kHz per frame
        t.audio_in_s += samples * 2 / 2 / INPUT_RATE
    for samples in chunks_out:  # SessionTrace.model_audio: ms per chunk, 24 kHz
        t.audio_out_ms += samples * 2 / 2 / OUTPUT_RATE * 1000.0
    t.text_in_tokens = sum(text_tokens(s) for s in typed)
    t.text_out_tokens = sum(text_tokens(s) for s in parts)
    for i, result in enumerate(tool_results):
        tool = ToolRecord(f"c{i}", "search_nearby", {}, False, 0, t, status="ok")
        tool.response = result
        t.tools.append(tool)

    emulator = TurnUsage(
        input_text=sum(text_tokens(s) for s in typed),
        input_audio=audio_tokens(sum(chunks_in), INPUT_RATE),
        output_text=sum(text_tokens(s) for s in parts),
        output_audio_samples=sum(chunks_out),
        tool_use=sum(response_tokens(r) for r in tool_results),
    )
    per_frame = frame_tokens(model, resolution)
    carried_image = context_frames * per_frame  # billed in the carried (reported) usage
    context = Context(text=context_text, audio=context_audio, image=carried_image)
    context.image += new_frames * per_frame  # the emulator: each frame as it arrives
    billed = emulator.metadata(context)

    carried = {"text": context_text, "audio": context_audio, "image": carried_image}
    u = estimate_usage(t, carried, new_frames * per_frame)
    assert u.prompt == billed["promptTokenCount"]
    assert u.response == billed["responseTokenCount"]
    assert u.tool_use_prompt == billed.get("toolUsePromptTokenCount", 0)
    assert u.total == billed["totalTokenCount"]
    assert _details(u.prompt_details) == _wire(billed, "promptTokensDetails")
    assert _details(u.response_details) == _wire(billed, "responseTokensDetails")
    assert _details(u.tool_use_prompt_details) == _wire(billed, "toolUsePromptTokensDetails")
    # ...so it costs what the emulator's usage costs, to the last digit...
    prices = PriceTable.load(None)
    as_reported = UsageSnapshot(
        prompt=billed["promptTokenCount"],
        response=billed["responseTokenCount"],
        tool_use_prompt=billed.get("toolUsePromptTokenCount", 0),
        total=billed["totalTokenCount"],
        prompt_details=_snapshot_details(billed, "promptTokensDetails"),
        response_details=_snapshot_details(billed, "responseTokensDetails"),
        tool_use_prompt_details=_snapshot_details(billed, "toolUsePromptTokensDetails"),
    )
    estimated_cost = prices.cost(MODEL, UsageBreakdown.from_snapshot(u))
    billed_cost = prices.cost(MODEL, UsageBreakdown.from_snapshot(as_reported))
    assert estimated_cost is not None and billed_cost is not None
    assert estimated_cost.total == billed_cost.total
    # ...and the next turn carries what the emulator's context holds after this one.
    emulator.commit(context)
    after = context_after(UsageBreakdown.from_snapshot(u))
    assert after == {"text": context.text, "audio": context.audio, "image": context.image}


def test_an_estimate_bills_partial_audio_seconds_rounded_up_and_ignores_a_negative_context() -> (
    None
):
    silent = estimate_usage(_turn(audio_in_s=0.01, audio_out_ms=1.0), {"text": -5})
    assert silent.prompt == 1 and silent.response == 1  # never 0 for audible audio


def test_float_noise_in_summed_chunk_durations_does_not_add_a_token() -> None:
    t = _turn()
    for _ in range(50):
        t.audio_in_s += 0.02  # 50 × 20 ms frames: 1.0000000000000007 s in floats
    assert t.audio_in_s != 1.0
    assert estimate_usage(t, {}).prompt == 25


def test_transcripts_and_non_blocking_tool_results_are_not_billed_again() -> None:
    """Transcripts describe audio already billed as audio; a non-blocking result is billed by
    Gemini on the turn it starts, which this turn's record cannot tell."""
    t = _turn(audio_in_s=1.0, user_text=["find coffee"], output_text=["Kaffe is close."])
    tool = ToolRecord("c1", "search_nearby", {}, True, 0, t, status="ok")
    tool.response = {"places": ["Kaffe"]}
    t.tools.append(tool)
    u = estimate_usage(t, {})
    assert (u.prompt, u.response, u.tool_use_prompt) == (25, 0, 0)


def test_the_estimate_is_priced_like_reported_usage() -> None:
    t = _turn(audio_in_s=2.0, audio_out_ms=1500.0, text_in_tokens=3, text_out_tokens=1)
    u = estimate_usage(t, {"text": 100})
    split = UsageBreakdown.from_snapshot(u)
    assert split.input_uncached == {"text": 103, "audio": 50, "image": 0}
    assert split.output == {"text": 1, "audio": 38, "image": 0}
    prices = PriceTable.load(None)
    cost = prices.cost("gemini-3.8-live", split)
    same = prices.cost(
        "gemini-3.8-live",
        UsageBreakdown.from_snapshot(
            UsageSnapshot(
                prompt=153,
                response=39,
                prompt_details=u.prompt_details,
                response_details=u.response_details,
            )
        ),
    )
    assert cost is not None and same is not None and cost.total == same.total > 0


def test_the_next_turn_carries_prompt_answer_and_tool_responses_but_not_thinking() -> None:
    real = UsageBreakdown.from_snapshot(
        UsageSnapshot(prompt=300, cached=100, response=40, tool_use_prompt=20, thoughts=7)
    )
    assert context_after(real) == {"text": 200 + 100 + 20, "audio": 40, "image": 0}
