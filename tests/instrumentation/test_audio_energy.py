"""The drop-in instrumentor's voiced-frame check: every sample counts (no probing), exactly."""

from __future__ import annotations

import struct

import pytest
from voicetrace.telemetry.instrumentation.audio import VOICED_PEAK, is_voiced


@pytest.mark.parametrize(
    "loudest",
    [0, 767, 768, 999, 1000, 1001, 1023, 1024, 32767, -768, -769, -1000, -1001, -1024, -32768],
)
def test_one_sample_past_the_peak_makes_a_frame_voiced_at_each_high_byte_boundary(loudest) -> None:
    quiet = [(-1) ** i * (i % 700) for i in range(320)]
    for at in (0, 161, 319):  # first, middle, last sample
        samples = [*quiet[:at], loudest, *quiet[at + 1 :]]
        frame = struct.pack(f"<{len(samples)}h", *samples)
        assert is_voiced(frame) is (abs(loudest) > VOICED_PEAK), (loudest, at)
        assert is_voiced(frame + b"\x7f") is (abs(loudest) > VOICED_PEAK)  # a torn last byte
        # another threshold takes the sample pass; "louder than" is strict
        assert is_voiced(frame, threshold=max(abs(loudest), 700)) is False
