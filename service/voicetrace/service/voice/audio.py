"""PCM16 helpers: speech energy for turn timing, and speech-like audio for demos and tests.

The service does no voice activity detection of its own (Gemini's server-side VAD decides when a
turn ends); it only needs to know *when* the user was audible, to time the latency phases.
A peak-amplitude threshold is enough for that. It runs on every microphone frame, so it looks at
a fixed number of evenly spaced samples (`VOICED_PROBES`) instead of all of them: the cost is the
same for a 10 ms and a 100 ms frame (~1-2 µs), where a full scan costs ~10 µs per 20 ms frame.
Voiced speech stays above the threshold for a good part of every pitch period (≥ ~1 ms at
70-400 Hz), much longer than the probe spacing of a typical frame (0.6 ms at 20 ms / 32 probes),
so speech is not missed; an isolated click between probes may be, which is fine for timing.
"""

from __future__ import annotations

import math
import random
import sys
from array import array

VOICED_PEAK = 1_000  # about -30 dBFS; room noise stays well below, speech well above
VOICED_PROBES = 32  # samples examined per frame (at most 2x this for short frames)
ROOM_NOISE_PEAK = 300  # about -40 dBFS: a quiet room through a laptop microphone


def pcm16_duration_s(nbytes: int, sample_rate: int) -> float:
    return nbytes / (2 * sample_rate)


def is_voiced(frame: bytes, threshold: int = VOICED_PEAK) -> bool:
    """True when a sample of this PCM16 LE frame, probed at `VOICED_PROBES` evenly spaced points,
    is louder than `threshold`. Constant time: the probes are a strided view, nothing is copied."""
    usable = len(frame) - len(frame) % 2
    if usable == 0:
        return False
    samples = memoryview(frame)[:usable].cast("h")
    probes = samples[:: max(1, len(samples) // VOICED_PROBES)]
    if sys.byteorder == "big":  # a native 'h' view reads LE samples wrongly here: swap the probes
        swapped = array("h", probes.tobytes())
        swapped.byteswap()
        return max(swapped) > threshold or min(swapped) < -threshold
    return max(probes) > threshold or min(probes) < -threshold


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
