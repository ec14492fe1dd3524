"""Estimates, and the attribute keys that flag them on the `chat` span.

A turn Gemini reported no usage for (an interrupted turn, a dropped connection) is still billed
by Gemini; `estimate_usage` rebuilds it from what was streamed, so budgets and the ledger count
it. It is meant to be made only when the turn's generation goes out for good without usage
(`TurnOutbox.emit_final` / the deferred branch of `flush_due`), so real usage that arrives in
time always wins and an estimate is never added to it. Not switched on yet: the `chat` span
must first say so (`voice.usage.estimated`, keeping `voice.usage.missing` and the WARNING
level), which is `spans.py`'s job; until then a usage-less turn bills nothing, as before.

- `voice.cost.estimated=true`: the model had no price entry; the table's `fallback` priced it
  (`prices.Cost.estimated`).
- `voice.usage.estimated=true`: Gemini reported no usage for the turn; the tokens were estimated
  from what was streamed.

They live here, beside the pricing that decides them, until `keys.py` (the one constants module)
takes them over; `spans.py` sets them on the `chat` span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from voicetrace.telemetry.records import ModalityTokens, UsageSnapshot

if TYPE_CHECKING:
    from voicetrace.telemetry.turns import TurnRecord
    from voicetrace.telemetry.usage import UsageBreakdown

COST_ESTIMATED: Final = "voice.cost.estimated"
USAGE_ESTIMATED: Final = "voice.usage.estimated"


# Documented rates (ai.google.dev Live API docs): audio is 25 tokens per second, in and out;
# text is about 4 characters per token. The emulator bills exactly these (emulator/usage.py).
AUDIO_TOKENS_PER_S = 25
CHARS_PER_TOKEN = 4


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def estimate_usage(t: TurnRecord, context_tokens: int) -> UsageSnapshot:
    """What Gemini would have billed for a turn it reported no usage for: the context carried
    into the turn (re-billed every turn), the user's audio and (captured) text, and the model's
    audio and (captured) text. Text is only known when content capture is on; audio always."""
    audio_in = _ceil_div(int(t.audio_in_s * 1000) * AUDIO_TOKENS_PER_S, 1000)
    text_in = sum(_ceil_div(len(s), CHARS_PER_TOKEN) for s in t.user_text)
    audio_out = _ceil_div(int(t.audio_out_ms) * AUDIO_TOKENS_PER_S, 1000)
    text_out = sum(_ceil_div(len(s), CHARS_PER_TOKEN) for s in t.output_text)
    prompt = max(context_tokens, 0) + audio_in + text_in
    response = audio_out + text_out
    return UsageSnapshot(
        prompt=prompt,
        response=response,
        total=prompt + response,
        prompt_details=(
            ModalityTokens("AUDIO", audio_in),
            ModalityTokens("TEXT", prompt - audio_in),
        ),
        response_details=(ModalityTokens("AUDIO", audio_out), ModalityTokens("TEXT", text_out)),
    )


def context_after(usage: UsageBreakdown) -> int:
    """The context the next turn carries: this turn's prompt and its answer (thinking is not
    kept in the context; tool responses already are in the next prompt)."""
    prompt = sum(usage.input_uncached.values()) + sum(usage.input_cached.values())
    return prompt + sum(usage.output.values())
