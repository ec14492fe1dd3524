"""Gemini `usageMetadata` → non-overlapping usage buckets.

Langfuse sums usage keys and prices each one, so the buckets must not overlap: Gemini's prompt
count *includes* cached tokens and its per-modality details, while tool-use prompt and thinking
tokens come on top. This module splits one snapshot into disjoint buckets whose sum is the
billable total, and also derives the (overlapping, aggregate-includes-parts) semconv keys that
other backends expect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from voicetrace.telemetry import keys as k
from voicetrace.telemetry.records import ModalityTokens, UsageSnapshot

MODALITIES = ("text", "audio", "image")
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))

# Gemini modality names → our three priced modalities (as indexes into [text, audio, image]).
# VIDEO frames bill as image; DOCUMENT and unspecified content as text.
_INDEX = {"TEXT": 0, "AUDIO": 1, "IMAGE": 2, "VIDEO": 2}
_TEXT, _AUDIO = 0, 1
_TAKE_BACK = {_TEXT: (0, 1, 2), _AUDIO: (1, 0, 2)}  # remainder modality first


def _by_modality(details: Iterable[ModalityTokens]) -> list[int]:
    out = [0, 0, 0]
    for d in details:
        out[_INDEX.get(str(d.modality).upper(), _TEXT)] += max(int(d.tokens), 0)
    return out


def _fit(parts: list[int], total: int, remainder_to: int) -> dict[str, int]:
    """Make `parts` sum to `total`: a missing remainder goes to `remainder_to`; an excess (the
    details over-report) is taken back from the modalities, remainder modality first.
    (Lists on purpose: this runs on the caller's thread for every turn.)"""
    gap = total - (parts[0] + parts[1] + parts[2])
    if gap >= 0:
        parts[remainder_to] += gap
    else:
        excess = -gap
        for i in _TAKE_BACK[remainder_to]:
            take = min(parts[i], excess)
            parts[i] -= take
            excess -= take
    return {"text": parts[0], "audio": parts[1], "image": parts[2]}


@dataclass(frozen=True, slots=True)
class UsageBreakdown:
    """Disjoint token buckets of one turn (their sum is `total`)."""

    input_uncached: dict[str, int]  # prompt minus cached, by modality
    input_cached: dict[str, int]  # cached, by modality
    input_tool_use: dict[str, int]  # tool-use prompt, by modality
    output: dict[str, int]  # response, by modality (text, audio)
    reasoning: int  # thinking tokens (bill as text output)
    reported_total: int

    @classmethod
    def from_snapshot(cls, u: UsageSnapshot) -> UsageBreakdown:
        prompt, cached = max(u.prompt, 0), min(max(u.cached, 0), max(u.prompt, 0))
        cached_by = _fit(_by_modality(u.cache_details), cached, _TEXT)
        p = _by_modality(u.prompt_details)
        hint = [
            max(p[0] - cached_by["text"], 0),
            max(p[1] - cached_by["audio"], 0),
            max(p[2] - cached_by["image"], 0),
        ]
        # Undetailed prompt tokens (system prompt, tool declarations) are text.
        uncached = _fit(hint, prompt - cached, _TEXT)
        tool_use = _fit(_by_modality(u.tool_use_prompt_details), max(u.tool_use_prompt, 0), _TEXT)
        # Live answers in speech: undetailed response tokens are audio.
        output = _fit(_by_modality(u.response_details), max(u.response, 0), _AUDIO)
        return cls(uncached, cached_by, tool_use, output, max(u.thoughts, 0), max(u.total, 0))

    @property
    def input_tokens(self) -> int:
        return (
            sum(self.input_uncached.values())
            + sum(self.input_cached.values())
            + sum(self.input_tool_use.values())
        )

    @property
    def output_tokens(self) -> int:
        return sum(self.output.values()) + self.reasoning

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def details(self) -> dict[str, int]:
        """Langfuse `usage_details`: non-overlapping keys (all start with input/output) + total."""
        d = {
            "input_text_tokens": self.input_uncached["text"],
            "input_audio_tokens": self.input_uncached["audio"],
            "input_image_tokens": self.input_uncached["image"],
            "input_cached_tokens": sum(self.input_cached.values()),
            "input_tool_use_tokens": sum(self.input_tool_use.values()),
            "output_text_tokens": self.output["text"],
            "output_audio_tokens": self.output["audio"],
            "output_image_tokens": self.output["image"],
            "output_reasoning_tokens": self.reasoning,
        }
        d["total"] = sum(d.values())
        return d

    def by_modality(self) -> dict[str, int]:
        """`{input,output}_{modality}` totals (cached and tool-use included) for summaries."""
        out = {}
        for m in MODALITIES:
            out[f"input_{m}"] = (
                self.input_uncached[m] + self.input_cached[m] + self.input_tool_use[m]
            )
        for m in MODALITIES:
            out[f"output_{m}"] = self.output[m]
        out["output_reasoning"] = self.reasoning
        return out

    def attributes(self) -> dict[str, int | str]:
        """Semconv usage keys (aggregates include their parts) + the Langfuse JSON."""
        attrs: dict[str, int | str] = {
            k.USAGE_INPUT_TOKENS: self.input_tokens,
            k.USAGE_OUTPUT_TOKENS: self.output_tokens,
            k.USAGE_CACHE_READ_INPUT_TOKENS: sum(self.input_cached.values()),
            k.USAGE_REASONING_OUTPUT_TOKENS: self.reasoning,
            k.USAGE_TOOL_USE_PROMPT_TOKENS: sum(self.input_tool_use.values()),
            k.USAGE_REPORTED_TOTAL_TOKENS: self.reported_total,
        }
        for m in MODALITIES:
            total_in = self.input_uncached[m] + self.input_cached[m] + self.input_tool_use[m]
            if total_in:
                attrs[k.usage_modality_key(m, "input")] = total_in
            if self.input_cached[m]:
                attrs[k.usage_modality_cache_read_key(m)] = self.input_cached[m]
            if self.output[m]:
                attrs[k.usage_modality_key(m, "output")] = self.output[m]
        attrs[k.LF_USAGE_DETAILS] = _COMPACT_JSON.encode(self.details())
        return attrs
