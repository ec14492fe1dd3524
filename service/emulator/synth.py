"""Speech-like synthetic model audio (PCM16 LE mono, 24 kHz).

A 140 Hz voice with harmonics under a 4 Hz syllable envelope repeats exactly every 250 ms
(140 / 4 is whole), so one period is computed once per call and tiled: cheap enough to stream
hundreds of concurrent replies.
"""

from __future__ import annotations

import math
import sys
from array import array

OUTPUT_RATE = 24_000
_PERIOD_SAMPLES = OUTPUT_RATE // 4


def _period() -> bytes:
    out = array("h", bytes(2 * _PERIOD_SAMPLES))
    for i in range(_PERIOD_SAMPLES):
        t = i / OUTPUT_RATE
        envelope = 0.55 + 0.45 * math.sin(2 * math.pi * 4.0 * t)
        tone = (
            math.sin(2 * math.pi * 140.0 * t)
            + 0.5 * math.sin(2 * math.pi * 280.0 * t)
            + 0.25 * math.sin(2 * math.pi * 420.0 * t)
        )
        out[i] = int(8_000 * envelope * tone / 1.75)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


class SpeechSynth:
    """Hands out consecutive chunks of an endless speech-like signal."""

    def __init__(self) -> None:
        self._period = _period()
        self._offset = 0  # in bytes, within the period

    def take(self, samples: int) -> bytes:
        need = 2 * samples
        parts: list[bytes] = []
        while need > 0:
            piece = self._period[self._offset : self._offset + need]
            parts.append(piece)
            need -= len(piece)
            self._offset = (self._offset + len(piece)) % len(self._period)
        return b"".join(parts)
