"""PCM16 helpers: speech energy for turn timing, and speech-like audio for demos and tests.

The service does no voice activity detection of its own (Gemini's server-side VAD decides when a
turn ends); it only needs to know *when* the user was audible, to time the latency phases.
A peak-amplitude threshold is enough for that and costs two C-level passes over the frame.
"""

from __future__ import annotations

import math
import sys
from array import array

VOICED_PEAK = 1_000  # about -30 dBFS; room noise stays well below, speech well above


def pcm16_duration_s(nbytes: int, sample_rate: int) -> float:
    return nbytes / (2 * sample_rate)


def is_voiced(frame: bytes, threshold: int = VOICED_PEAK) -> bool:
    """True when any sample of this PCM16 LE frame is louder than `threshold`."""
    samples = array("h")
    samples.frombytes(frame[: len(frame) - len(frame) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return False
    return max(samples) > threshold or min(samples) < -threshold


def speech_like(duration_s: float, sample_rate: int = 16_000, pitch_hz: float = 140.0) -> bytes:
    """Deterministic voiced audio: a few harmonics under a syllable-rate envelope."""
    n = int(duration_s * sample_rate)
    out = array("h", bytes(2 * n))
    for i in range(n):
        t = i / sample_rate
        envelope = 0.55 + 0.45 * math.sin(2 * math.pi * 4.0 * t)  # ~4 syllables per second
        tone = (
            math.sin(2 * math.pi * pitch_hz * t)
            + 0.5 * math.sin(2 * math.pi * 2 * pitch_hz * t)
            + 0.25 * math.sin(2 * math.pi * 3 * pitch_hz * t)
        )
        out[i] = int(9_000 * envelope * tone / 1.75)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def silence(duration_s: float, sample_rate: int = 16_000) -> bytes:
    return bytes(2 * int(duration_s * sample_rate))


def frames(pcm: bytes, frame_ms: int = 20, sample_rate: int = 16_000) -> list[bytes]:
    """Split PCM16 audio into frames of `frame_ms` (the last one may be shorter)."""
    step = 2 * sample_rate * frame_ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]
