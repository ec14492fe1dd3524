"""The drop-in instrumentor's voiced-frame check: every sample counts (no probing), exactly."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from voicetrace.telemetry.instrumentation.audio import VOICED_PEAK, is_voiced

LOUDEST = (0, 767, 768, 999, 1000, 1001, 1023, 1024, 32767, -768, -769, -1000, -1001, -1024, -32768)
AT = (0, 5, 161, 319)  # first, between 32-sample probes, middle, last sample


def edge_frame(loudest: int, at: int) -> bytes:
    """A 320-sample (20 ms) frame of quiet samples with one `loudest` sample at `at`."""
    quiet = [(-1) ** i * (i % 700) for i in range(320)]
    samples = [*quiet[:at], loudest, *quiet[at + 1 :]]
    return struct.pack(f"<{len(samples)}h", *samples)


def edge_frames() -> Iterator[tuple[bytes, bool]]:
    """Every frame here with whether it is voiced (one sample louder than the peak)."""
    for loudest in (*LOUDEST, 5000):
        for at in AT:
            yield edge_frame(loudest, at), abs(loudest) > VOICED_PEAK


@pytest.mark.parametrize("loudest", LOUDEST)
def test_one_sample_past_the_peak_makes_a_frame_voiced_at_each_high_byte_boundary(loudest) -> None:
    for at in AT:
        frame = edge_frame(loudest, at)
        assert is_voiced(frame) is (abs(loudest) > VOICED_PEAK), (loudest, at)
        assert is_voiced(frame + b"\x7f") is (abs(loudest) > VOICED_PEAK)  # a torn last byte
        # another threshold takes the sample pass; "louder than" is strict
        assert is_voiced(frame, threshold=max(abs(loudest), 700)) is False
