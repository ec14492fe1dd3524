"""Deterministic token accounting, shaped like Gemini Live's `usageMetadata`.

The rules (exact, so tests can assert numbers):

- text: `ceil(characters / 4)` tokens per piece of text (each text part, transcript or reply is
  one piece);
- audio: 25 tokens per second, `ceil(samples * 25 / rate)`; input audio is counted from the
  samples the server received (16 kHz), output audio from the samples it sent (24 kHz);
- images (realtime video frames, JPEG or PNG): a fixed count per frame by media resolution, as
  Gemini documents it (docs/emulator.md): Gemini 3 models 70 tokens at LOW and MEDIUM (the
  default) and 280 at HIGH; Gemini 2.x models 258 (66 at LOW). Realtime frames join the context
  when they arrive (as the SDK documents for `send_realtime_input`), so every later turn re-bills
  them, reported as `IMAGE` in `promptTokensDetails`;
- system instruction: the text of its parts joined, as one piece;
- each function declaration: `8 + text(name) + text(description)`;
- a function response: `text(json.dumps(response, sort_keys=True, separators=(",", ":")))`;
- per turn: `promptTokenCount` = the whole context so far (system instruction + tools + every
  earlier turn's input, output and tool responses) + this turn's input, re-billed every turn;
  `promptTokensDetails` splits that by modality; `responseTokenCount` is this turn's output;
  `toolUsePromptTokenCount` the tool responses received during this turn;
  `thoughtsTokenCount` comes from the scenario; `totalTokenCount` is the sum of those four.
  Thoughts are not kept in the context; SILENT tool responses go straight into the context.
- REST (`generateContent`) uses the same rules with `candidatesTokenCount` for the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from voicetrace.emulator.protocol import ceil_div, pick

AUDIO_TOKENS_PER_S = 25
INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
TOOL_DECLARATION_OVERHEAD = 8
# Tokens per video frame by `generationConfig.mediaResolution` (None: unspecified).
FRAME_TOKENS_GEMINI_3 = {None: 70, "LOW": 70, "MEDIUM": 70, "HIGH": 280}
FRAME_TOKENS_GEMINI_2 = {None: 258, "LOW": 66, "MEDIUM": 258, "HIGH": 258}


def frame_tokens(model: str, resolution: str | None) -> int:
    """Tokens one realtime video frame costs on `model` at `resolution` (LOW/MEDIUM/HIGH)."""
    old = model.startswith(("gemini-2", "gemini-live-2"))
    return (FRAME_TOKENS_GEMINI_2 if old else FRAME_TOKENS_GEMINI_3)[resolution]


def text_tokens(text: str) -> int:
    return ceil_div(len(text), 4)


def audio_tokens(samples: int, rate: int) -> int:
    return ceil_div(samples * AUDIO_TOKENS_PER_S, rate)


def system_tokens(system_instruction: Any) -> int:
    """Tokens of a `systemInstruction` (a Content, or a plain string)."""
    if isinstance(system_instruction, str):
        return text_tokens(system_instruction)
    parts = pick(system_instruction, "parts") or []
    return text_tokens("".join(str(pick(p, "text") or "") for p in parts))


def declaration_tokens(declaration: dict[str, Any]) -> int:
    name = str(pick(declaration, "name") or "")
    description = str(pick(declaration, "description") or "")
    return TOOL_DECLARATION_OVERHEAD + text_tokens(name) + text_tokens(description)


def response_tokens(response: Any) -> int:
    return text_tokens(json.dumps(response, sort_keys=True, separators=(",", ":")))


@dataclass
class Context:
    """The conversation context the model re-reads every turn, by modality (in tokens)."""

    text: int = 0
    audio: int = 0
    image: int = 0  # realtime video frames, added as they arrive


@dataclass
class TurnUsage:
    """What one turn consumed and produced; `metadata()` renders Live's `usageMetadata`."""

    input_text: int = 0
    input_audio: int = 0
    output_text: int = 0
    output_audio_samples: int = 0
    tool_use: int = 0
    thoughts: int = 0

    @property
    def output_audio(self) -> int:
        return audio_tokens(self.output_audio_samples, OUTPUT_RATE)

    def metadata(self, context: Context, *, rest: bool = False) -> dict[str, Any]:
        prompt_text = context.text + self.input_text
        prompt_audio = context.audio + self.input_audio
        prompt = prompt_text + prompt_audio + context.image
        response = self.output_text + self.output_audio
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        usage["candidatesTokenCount" if rest else "responseTokenCount"] = response
        if self.tool_use:
            usage["toolUsePromptTokenCount"] = self.tool_use
        if self.thoughts:
            usage["thoughtsTokenCount"] = self.thoughts
        usage["totalTokenCount"] = prompt + response + self.tool_use + self.thoughts
        usage["promptTokensDetails"] = _details(
            TEXT=prompt_text, AUDIO=prompt_audio, IMAGE=context.image
        )
        details = _details(TEXT=self.output_text, AUDIO=self.output_audio)
        if details:
            usage["candidatesTokensDetails" if rest else "responseTokensDetails"] = details
        if self.tool_use:
            usage["toolUsePromptTokensDetails"] = _details(TEXT=self.tool_use)
        return usage

    def commit(self, context: Context) -> None:
        """After the turn, its input, output and tool responses become context."""
        context.text += self.input_text + self.output_text + self.tool_use
        context.audio += self.input_audio + self.output_audio


def _details(**by_modality: int) -> list[dict[str, Any]]:
    return [{"modality": m, "tokenCount": n} for m, n in by_modality.items() if n]
