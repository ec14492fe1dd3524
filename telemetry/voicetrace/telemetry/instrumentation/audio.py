"""PCM16 speech energy, for turn timing: when was the user audible?

No voice activity detection of our own (Gemini's server-side VAD decides when a turn ends); a
peak-amplitude threshold is enough to time the latency phases and costs two C-level passes over
the frame. Shared by the drop-in instrumentor and (re-exported) the service.
"""

from __future__ import annotations

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
