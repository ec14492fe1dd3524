"""Speech-like synthetic model audio (PCM16 LE mono, 24 kHz).

A 140 Hz voice with harmonics under a 4 Hz syllable envelope repeats exactly every 250 ms
(140 / 4 is whole), so one period is computed once per call and tiled: cheap enough to stream
hundreds of concurrent replies.
"""

from __future__ import annotations

import math
import re
import sys
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicetrace.emulator.scenario import Scenario

OUTPUT_RATE = 24_000
_PERIOD_SAMPLES = OUTPUT_RATE // 4
AUDIO_MIME = f"audio/pcm;rate={OUTPUT_RATE}"
_PIECE = re.compile(r"\S+\s*")


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


@dataclass(frozen=True, slots=True)
class ReplyChunk:
    """One message of a reply: `samples` of audio at 24 kHz and the transcript piece it carries."""

    said: str
    samples: int


def reply_chunks(text: str, scenario: Scenario) -> list[ReplyChunk]:
    """Split a reply into `chunk_ms` audio chunks lasting `ms_per_char` per character (capped),
    with its words spread evenly and in order over the chunks (they join back to `text`)."""
    pieces = _PIECE.findall(text) or [text]
    duration_ms = min(len(text) * scenario.ms_per_char, scenario.max_reply_s * 1000)
    chunk_samples = scenario.chunk_ms * OUTPUT_RATE // 1000
    total = int(duration_ms * OUTPUT_RATE / 1000)
    count = max(1, -(-total // chunk_samples))
    chunks = []
    for index in range(count):
        lo, hi = index * len(pieces) // count, (index + 1) * len(pieces) // count
        samples = min(chunk_samples, total - index * chunk_samples) or chunk_samples
        chunks.append(ReplyChunk("".join(pieces[lo:hi]), samples))
    return chunks
