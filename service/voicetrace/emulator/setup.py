"""Validating a Live `setup` message into the few settings the emulator acts on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicetrace.emulator.protocol import (
    NON_BLOCKING_DEFAULT_MODELS,
    CloseError,
    has,
    is_audio_only,
    is_live_model,
    model_name,
    pick,
)
from voicetrace.emulator.usage import declaration_tokens, system_tokens


@dataclass(frozen=True, slots=True)
class LiveSetup:
    model: str
    modality: str  # "AUDIO" or "TEXT"
    behaviors: dict[str, str]  # declared function name → "BLOCKING" | "NON_BLOCKING"
    input_transcription: bool
    output_transcription: bool
    resumption: bool
    resume_handle: str | None
    manual_activity: bool
    silence_duration_ms: int
    system_tokens: int
    tools_tokens: int
    media_resolution: str | None = None  # LOW | MEDIUM | HIGH; None: the model's default


def parse_setup(setup: Any, default_silence_ms: int, version: str) -> LiveSetup:
    """Check a setup like Gemini does: 1008 for an unknown model, 1007 for invalid arguments."""
    if not isinstance(setup, dict):
        raise CloseError(1007, "Invalid JSON payload: the first message must be a setup message.")
    model = model_name(pick(setup, "model"))
    if not is_live_model(model):
        raise CloseError(
            1008,
            f"models/{model} is not found for API version {version}, or is not supported "
            "for bidiGenerateContent.",
        )
    generation = pick(setup, "generationConfig") or {}
    modalities = [str(m).upper() for m in (pick(generation, "responseModalities") or ["AUDIO"])]
    if len(modalities) != 1 or modalities[0] not in ("AUDIO", "TEXT"):
        raise CloseError(1007, "Invalid argument: exactly one response modality, AUDIO or TEXT.")
    if modalities[0] == "TEXT" and is_audio_only(model):
        raise CloseError(
            1007, f"Invalid argument: models/{model} does not support the TEXT response modality."
        )
    default_behavior = "NON_BLOCKING" if model in NON_BLOCKING_DEFAULT_MODELS else "BLOCKING"
    behaviors: dict[str, str] = {}
    tools_tokens = 0
    for tool in pick(setup, "tools") or []:
        for declaration in pick(tool, "functionDeclarations") or []:
            name = pick(declaration, "name")
            if not isinstance(name, str) or not name:
                raise CloseError(1007, "Invalid argument: a function declaration has no name.")
            behavior = str(pick(declaration, "behavior") or "").upper()
            if behavior not in ("BLOCKING", "NON_BLOCKING"):
                behavior = default_behavior
            behaviors[name] = behavior
            tools_tokens += declaration_tokens(declaration)
    detection = pick(pick(setup, "realtimeInputConfig"), "automaticActivityDetection") or {}
    silence_ms = pick(detection, "silenceDurationMs")
    try:
        silence_ms = int(silence_ms) if silence_ms is not None else default_silence_ms
    except (TypeError, ValueError):
        raise CloseError(
            1007, "Invalid argument: silence_duration_ms must be an integer."
        ) from None
    if silence_ms <= 0:
        raise CloseError(1007, "Invalid argument: silence_duration_ms must be positive.")
    resolution = pick(generation, "mediaResolution")
    if resolution is not None:
        resolution = str(resolution).upper().removeprefix("MEDIA_RESOLUTION_")
        if resolution == "UNSPECIFIED":
            resolution = None
        elif resolution not in ("LOW", "MEDIUM", "HIGH"):
            raise CloseError(1007, "Invalid argument: unknown media_resolution.")
    resumption = pick(setup, "sessionResumption")
    return LiveSetup(
        model=model,
        modality=modalities[0],
        behaviors=behaviors,
        input_transcription=has(setup, "inputAudioTranscription"),
        output_transcription=has(setup, "outputAudioTranscription"),
        resumption=resumption is not None,
        resume_handle=pick(resumption, "handle") or None,
        manual_activity=bool(pick(detection, "disabled", False)),
        silence_duration_ms=silence_ms,
        system_tokens=system_tokens(pick(setup, "systemInstruction")),
        tools_tokens=tools_tokens,
        media_resolution=resolution,
    )
