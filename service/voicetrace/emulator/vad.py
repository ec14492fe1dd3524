"""Server-side voice activity detection, measured in audio time.

Gemini ends a spoken turn after `silence_duration_ms` of silence following speech. We detect
speech by peak amplitude per 10 ms frame and count silence in *samples received*, never wall
clock, so a test that sends 1 s of speech and 0.6 s of silence gets the same turn boundary no
matter how fast it sends them.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from typing import Literal

FRAME_SAMPLES = 160  # 10 ms at 16 kHz
DEFAULT_THRESHOLD = 1_000  # peak, about -30 dBFS

VadEvent = Literal["speech_start", "speech_end"]


@dataclass(frozen=True, slots=True)
class Boundary:
    """A VAD decision at `sample` (counted from the first sample of the stream)."""

    event: VadEvent
    sample: int


class Endpointer:
    """Feeds PCM16 LE mono and reports where speech starts and where its trailing silence ends."""

    def __init__(
        self,
        silence_duration_ms: int,
        sample_rate: int = 16_000,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        self.silence_samples_needed = max(1, silence_duration_ms * sample_rate // 1000)
        self.threshold = threshold
        self.samples = 0  # every sample received
        self.in_speech = False
        self._silence = 0
        self._pending = b""

    def feed(self, pcm: bytes) -> list[Boundary]:
        data = self._pending + pcm
        usable = len(data) - len(data) % (2 * FRAME_SAMPLES)
        self._pending = data[usable:]
        events: list[Boundary] = []
        for start in range(0, usable, 2 * FRAME_SAMPLES):
            frame = data[start : start + 2 * FRAME_SAMPLES]
            self.samples += FRAME_SAMPLES
            if peak(frame) > self.threshold:
                self._silence = 0
                if not self.in_speech:
                    self.in_speech = True
                    events.append(Boundary("speech_start", self.samples - FRAME_SAMPLES))
            elif self.in_speech:
                self._silence += FRAME_SAMPLES
                if self._silence >= self.silence_samples_needed:
                    self.in_speech = False
                    self._silence = 0
                    events.append(Boundary("speech_end", self.samples))
        return events

    @property
    def received(self) -> int:
        """Samples received so far, including a partial frame not yet analysed."""
        return self.samples + len(self._pending) // 2

    def reset_speech(self) -> None:
        """Forget an open utterance (it was ended by audioStreamEnd or taken over manually)."""
        self.in_speech = False
        self._silence = 0


def peak(frame: bytes) -> int:
    samples = array("h")
    samples.frombytes(frame[: len(frame) - len(frame) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0
    return max(max(samples), -min(samples))
