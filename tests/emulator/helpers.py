"""Helpers for the emulator tests: audio, SDK turns, transcripts, usage details."""

from __future__ import annotations

import asyncio
import math
from array import array
from typing import Any

from google.genai import types

# Fast pacing: tests do not need real-time audio, only the right messages in the right order.
FAST = {"speed": 500.0}


def live_config(**overrides: Any) -> types.LiveConnectConfig:
    values: dict[str, Any] = {
        "response_modalities": ["AUDIO"],
        "input_audio_transcription": {},
        "output_audio_transcription": {},
    }
    values.update(overrides)
    return types.LiveConnectConfig(**values)


def speech(seconds: float, rate: int = 16_000) -> bytes:
    """A loud 220 Hz tone: unmistakably "voiced" for a peak-amplitude VAD."""
    n = round(seconds * rate)
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n))
    ).tobytes()


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return bytes(2 * round(seconds * rate))


async def send_audio(session: Any, pcm: bytes, chunk_ms: int = 100) -> None:
    step = 2 * 16 * chunk_ms
    for start in range(0, len(pcm), step):
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[start : start + step], mime_type="audio/pcm;rate=16000")
        )


async def one_turn(session: Any) -> list[types.LiveServerMessage]:
    """Every message of the next turn, up to and including `turnComplete`."""
    return [message async for message in session.receive()]


def audio_out(messages: list[types.LiveServerMessage]) -> bytes:
    return b"".join(m.data for m in messages if m.data)


def transcript(messages: list[types.LiveServerMessage], kind: str = "output") -> str:
    attr = f"{kind}_transcription"
    return "".join(
        getattr(m.server_content, attr).text
        for m in messages
        if m.server_content and getattr(m.server_content, attr)
    )


def modalities(details: list[types.ModalityTokenCount] | None) -> dict[str, int]:
    return {d.modality.value: d.token_count for d in details or []}


def reply_samples(text: str, ms_per_char: float = 60.0, cap_s: float = 12.0) -> int:
    """Output samples the emulator speaks for `text` (its documented duration rule), at 24 kHz."""
    return int(min(len(text) * ms_per_char, cap_s * 1000) * 24)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Wait for a condition on the emulator's state (e.g. its wire log) to become true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def text_turn(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def server_content_flags(messages: list[types.LiveServerMessage]) -> list[str]:
    """The turn's shape: which control signals arrived, in order."""
    flags = []
    for m in messages:
        if m.tool_call:
            flags.append("toolCall")
        if m.tool_call_cancellation:
            flags.append("toolCallCancellation")
        sc = m.server_content
        if sc is None:
            continue
        for name in ("interrupted", "generation_complete", "turn_complete"):
            if getattr(sc, name):
                flags.append(name)
    return flags
