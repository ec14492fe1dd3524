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


# High bytes (as unsigned) of PCM16 LE samples: 0x00-0x02 and 0xFD-0xFF are |x| < 768, always
# quiet; 0x03 (768…1023) and 0xFC (-1024…-769) straddle VOICED_PEAK; any other is |x| > 1023.
_QUIET_HIGH = bytes((0x00, 0x01, 0x02, 0x03, 0xFC, 0xFD, 0xFE, 0xFF))
_BORDER_HIGH = (b"\x03", b"\xfc")


def is_voiced(frame: bytes, threshold: int = VOICED_PEAK) -> bool:
    """True when any sample of this PCM16 LE frame is louder than `threshold`."""
    if threshold == VOICED_PEAK:
        # One strided copy and one delete over the high bytes (C speed, no int objects):
        # a frame louder than 1023 somewhere, or quieter than 768 everywhere, is decided
        # here; only a frame peaking at 768…1023 needs the exact sample pass below.
        high = frame[1 : len(frame) - len(frame) % 2 : 2]
        if high.translate(None, _QUIET_HIGH):
            return True
        if not any(b in high for b in _BORDER_HIGH):
            return False
    samples = array("h")
    samples.frombytes(frame[: len(frame) - len(frame) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return False
    return max(samples) > threshold or min(samples) < -threshold
