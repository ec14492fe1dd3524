"""The voiced-frame check and the audio generators it is exercised with (pure functions)."""

from __future__ import annotations

import math
import struct

import pytest
from voicetrace.service.voice.audio import (
    ROOM_NOISE_PEAK,
    VOICED_PEAK,
    VOICED_PROBES,
    frames,
    is_voiced,
    mix,
    room_noise,
    silence,
    speech_like,
)


def _tone(seconds: float, hz: float, amplitude: int, rate: int = 16_000) -> bytes:
    n = int(seconds * rate)
    return struct.pack(
        f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * hz * i / rate)) for i in range(n))
    )


def _peak(frame: bytes) -> int:
    return max(abs(v) for v in struct.unpack(f"<{len(frame) // 2}h", frame))


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 100])
def test_speech_frames_agree_with_a_full_scan_at_every_frame_size(frame_ms: int) -> None:
    # speech_like's syllable envelope dips below the threshold: those frames are silent to a
    # full scan too. Frames clearly above it (peak ≥ 1.5x) must be voiced, frames at or
    # below it must not be; only the borderline band may differ from the full scan.
    speech = frames(mix(speech_like(1.0), room_noise(1.0)), frame_ms)
    loud = [f for f in speech if _peak(f) >= 1.5 * VOICED_PEAK]
    quiet = [f for f in speech if _peak(f) <= VOICED_PEAK]
    assert len(loud) > 0.6 * len(speech)
    assert all(is_voiced(f) for f in loud)
    assert not any(is_voiced(f) for f in quiet)


@pytest.mark.parametrize("frame_ms", [10, 20, 100])
def test_silence_and_room_noise_are_not_voiced(frame_ms: int) -> None:
    assert not any(is_voiced(f) for f in frames(silence(1.0), frame_ms))
    assert not any(is_voiced(f) for f in frames(room_noise(1.0), frame_ms))


@pytest.mark.parametrize("hz", [70, 110, 140, 220, 330, 400])
def test_voices_across_the_pitch_range_are_voiced_despite_probing(hz: float) -> None:
    # A pure tone is the worst case for strided probes (no harmonics to fill the gaps).
    assert all(is_voiced(f) for f in frames(_tone(0.5, hz, 4_000), 20))


def test_threshold_is_peak_amplitude_in_either_polarity() -> None:
    loud_neg = struct.pack("<320h", *([-(VOICED_PEAK + 1)] * 320))
    at_threshold = struct.pack("<320h", *([VOICED_PEAK] * 320))
    assert is_voiced(loud_neg)
    assert not is_voiced(at_threshold)
    assert is_voiced(at_threshold, threshold=VOICED_PEAK - 1)


def test_samples_are_read_little_endian() -> None:
    # 0x0400 = 1024 little-endian (voiced); read big-endian it would be 4 (silent).
    assert is_voiced(b"\x00\x04" * 320)
    assert not is_voiced(b"\x04\x00" * 320)


def test_empty_and_odd_frames_use_whole_samples_only() -> None:
    assert not is_voiced(b"")
    assert not is_voiced(b"\xff")  # half a sample is no sample
    assert is_voiced(struct.pack("<h", 5_000) + b"\x01")


def test_a_single_loud_sample_in_a_short_frame_is_found() -> None:
    # Frames up to 2x VOICED_PROBES samples are probed in full.
    samples = [0] * (2 * VOICED_PROBES - 1)
    samples[-1] = 9_000
    assert is_voiced(struct.pack(f"<{len(samples)}h", *samples))


def test_probes_do_not_grow_with_the_frame() -> None:
    # A long frame whose only loud samples fall between probes is not voiced: the check looks
    # at a bounded number of samples, whatever the frame length (that is what makes it cheap).
    n = 16_000
    step = n // VOICED_PROBES
    samples = [9_000 if i % step == step // 2 else 0 for i in range(n)]
    assert not is_voiced(struct.pack(f"<{n}h", *samples))


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
