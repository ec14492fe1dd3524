"""The audio generators, and the voiced-frame check the service uses (the telemetry's) on them."""

from __future__ import annotations

import math
import struct

import pytest
from voicetrace.service.voice.audio import (
    ROOM_NOISE_PEAK,
    frames,
    mix,
    room_noise,
    silence,
    speech_like,
)
from voicetrace.telemetry.instrumentation.audio import VOICED_PEAK, is_voiced


def _tone(seconds: float, hz: float, amplitude: int, rate: int = 16_000) -> bytes:
    n = int(seconds * rate)
    return struct.pack(
        f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * hz * i / rate)) for i in range(n))
    )


def _peak(frame: bytes) -> int:
    return max(abs(v) for v in struct.unpack(f"<{len(frame) // 2}h", frame))


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 100])
def test_speech_frames_are_voiced_exactly_where_their_peak_passes_the_threshold(
    frame_ms: int,
) -> None:
    # speech_like's syllable envelope dips below the threshold: those frames are silent.
    speech = frames(mix(speech_like(1.0), room_noise(1.0)), frame_ms)
    assert sum(_peak(f) >= 1.5 * VOICED_PEAK for f in speech) > 0.6 * len(speech)
    assert [is_voiced(f) for f in speech] == [_peak(f) > VOICED_PEAK for f in speech]


@pytest.mark.parametrize("frame_ms", [10, 20, 100])
def test_silence_and_room_noise_are_not_voiced(frame_ms: int) -> None:
    assert not any(is_voiced(f) for f in frames(silence(1.0), frame_ms))
    assert not any(is_voiced(f) for f in frames(room_noise(1.0), frame_ms))


@pytest.mark.parametrize("hz", [70, 110, 140, 220, 330, 400])
def test_voices_across_the_pitch_range_are_voiced(hz: float) -> None:
    assert all(is_voiced(f) for f in frames(_tone(0.5, hz, 4_000), 20))


def test_room_noise_is_quiet_nonzero_and_deterministic() -> None:
    noise = room_noise(0.5)
    values = struct.unpack(f"<{len(noise) // 2}h", noise)
    assert len(values) == 8_000
    assert max(abs(v) for v in values) <= ROOM_NOISE_PEAK
    assert sum(1 for v in values if v) > 0.9 * len(values)
    assert room_noise(0.5) == noise and room_noise(0.5, seed=1) != noise


def test_mix_adds_and_clips_to_the_shorter_signal() -> None:
    a = struct.pack("<3h", 30_000, -30_000, 5)
    b = struct.pack("<2h", 10_000, -10_000)
    assert struct.unpack("<2h", mix(a, b)) == (32_767, -32_768)
    assert mix(speech_like(0.2), silence(0.2)) == speech_like(0.2)
