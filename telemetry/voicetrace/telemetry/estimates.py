"""What Gemini would have billed for a turn it reported no usage for.

An interrupted turn, or one cut by a dropped connection, is still billed by Gemini, but often
arrives without `usageMetadata`. `estimate_usage` rebuilds its usage from what was streamed, so
the `chat` span, the session totals, budgets and the ledger count it. The outbox makes the
estimate only when the turn's generation goes out for good without usage
(`TurnOutbox.emit_final` / the deferred branch of `flush_due`): real usage that arrives while
the generation still waits always wins, and an estimate is never added to real usage. Once
made, the estimate is final (see docs/costs.md, "Turns without usage").

The rules are the documented rates (ai.google.dev, Live API and token counting): 25 tokens per
second of audio, in and out; about 4 characters per text token; a video frame what the app
says it costs at its media resolution (`SessionTrace.video_frame`'s `tokens`). The emulator
bills exactly these (`voicetrace.emulator.usage`), so an emulator turn whose usage was
suppressed is estimated to the token, except for what telemetry cannot see (thinking tokens;
audio the server billed to a turn before its first voiced frame).

The `chat` span says so with `voice.usage.estimated=true` (`keys.USAGE_ESTIMATED`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from voicetrace.telemetry.records import ModalityTokens, UsageSnapshot
from voicetrace.telemetry.usage import MODALITIES, UsageBreakdown

if TYPE_CHECKING:
    from voicetrace.telemetry.turns import TurnRecord

AUDIO_TOKENS_PER_S = 25
CHARS_PER_TOKEN = 4
# Audio seconds are float sums of chunk durations: round the token count to this many decimals
# before taking the ceiling, so 0.02 s × 50 chunks is 25 tokens, not 26. One sample is ~0.0016
# tokens, far above the rounding.
_TOKEN_DECIMALS = 6


def text_tokens(text: str) -> int:
    """One piece of text (a typed input, a text part, a tool response): ceil(chars / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def audio_tokens(seconds: float) -> int:
    """Audio: 25 tokens per second, partial seconds rounded up (never 0 for audible audio)."""
    if seconds <= 0:
        return 0
    return math.ceil(round(seconds * AUDIO_TOKENS_PER_S, _TOKEN_DECIMALS))


def tool_response_tokens(response: Any) -> int:
    """A function response as the model reads it: its compact, key-sorted JSON as text."""
    return text_tokens(json.dumps(response, sort_keys=True, separators=(",", ":"), default=str))


def estimate_usage(
    t: TurnRecord, context: Mapping[str, int], frame_tokens: int = 0
) -> UsageSnapshot:
    """The turn's usage as Gemini bills it: the context carried into the turn (re-billed every
    turn, by modality: `{"text": …, "audio": …, "image": …}`) plus the user's audio and typed
    text as the prompt, with `frame_tokens`, the image tokens of the camera and screen frames
    forwarded since that context was billed (frames join the context as they arrive); the
    model's audio and text parts as the response; the responses to the turn's blocking tool
    calls as tool-use prompt.

    Text is counted from the turn's own token counters (`text_in_tokens`, `text_out_tokens`,
    kept whether or not content is captured); transcripts are never counted: they describe audio
    that is already billed. Non-blocking tool results are billed by Gemini on the turn they
    start, which telemetry cannot tie to its call, so they are left out."""
    audio_in = audio_tokens(t.audio_in_s)
    audio_out = audio_tokens(t.audio_out_ms / 1000.0)
    tool_use = sum(
        tool_response_tokens(tool.response)
        for tool in t.tools
        if not tool.non_blocking and tool.status in ("ok", "error") and tool.response is not None
    )
    text = max(context.get("text", 0), 0) + t.text_in_tokens
    audio = max(context.get("audio", 0), 0) + audio_in
    image = max(context.get("image", 0), 0) + max(frame_tokens, 0)
    prompt = text + audio + image
    response = audio_out + t.text_out_tokens
    return UsageSnapshot(
        prompt=prompt,
        response=response,
        tool_use_prompt=tool_use,
        total=prompt + response + tool_use,
        prompt_details=_details(TEXT=text, AUDIO=audio, IMAGE=image),
        response_details=_details(AUDIO=audio_out, TEXT=t.text_out_tokens),
        tool_use_prompt_details=_details(TEXT=tool_use),
    )


def context_after(usage: UsageBreakdown) -> dict[str, int]:
    """The context the next turn carries, by modality: this turn's prompt, its answer and the
    tool responses it read (Gemini keeps them in the conversation); thinking is not kept."""
    return {
        m: usage.input_uncached[m]
        + usage.input_cached[m]
        + usage.input_tool_use[m]
        + usage.output[m]
        for m in MODALITIES
    }


def _details(**by_modality: int) -> tuple[ModalityTokens, ...]:
    return tuple(ModalityTokens(m, n) for m, n in by_modality.items() if n)
