"""PCM16 helpers: speech-like audio for demos and tests, and framing.

The voiced-frame check for turn timing is the telemetry's (`voicetrace.telemetry.
instrumentation.audio.is_voiced`: every sample counts, exactly), so the service and the
drop-in instrumentor start a turn on the same frame of the same audio; `pcm16_duration_s` is
re-exported from there.
"""

from __future__ import annotations

import math
import random
import sys
from array import array

from voicetrace.telemetry.instrumentation.audio import pcm16_duration_s

__all__ = [
    "ROOM_NOISE_PEAK",
    "frames",
    "mix",
    "pcm16_duration_s",
    "room_noise",
    "silence",
    "speech_like",
]

ROOM_NOISE_PEAK = 300  # about -40 dBFS: a quiet room through a laptop microphone


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


def room_noise(
    duration_s: float, sample_rate: int = 16_000, peak: int = ROOM_NOISE_PEAK, seed: int = 0
) -> bytes:
    """Deterministic room noise: band-limited random samples within ±`peak` (not digital
    silence, which hides the cost of compressing or encoding real microphone audio)."""
    rng = random.Random(seed)
    n = int(duration_s * sample_rate)
    out = array("h", bytes(2 * n))
    level = 0.0
    for i in range(n):
        level = 0.7 * level + 0.3 * rng.uniform(-peak, peak)  # a little low-pass: hum and hiss
        out[i] = int(level)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def mix(a: bytes, b: bytes) -> bytes:
    """Sample-wise sum of two PCM16 LE signals (clipped), as long as the shorter one."""
    x, y = array("h", a[: len(a) - len(a) % 2]), array("h", b[: len(b) - len(b) % 2])
    if sys.byteorder == "big":
        x.byteswap()
        y.byteswap()
    out = array("h", (max(-32768, min(32767, p + q)) for p, q in zip(x, y, strict=False)))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def silence(duration_s: float, sample_rate: int = 16_000) -> bytes:
    return bytes(2 * int(duration_s * sample_rate))


def frames(pcm: bytes, frame_ms: int = 20, sample_rate: int = 16_000) -> list[bytes]:
    """Split PCM16 audio into frames of `frame_ms` (the last one may be shorter)."""
    step = 2 * sample_rate * frame_ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]
