"""Timestamps carried inside the audio itself, so latency is matched per frame end to end.

Both relays (voicetrace and the bare one) pass PCM through untouched, base64 on the Gemini leg
and raw on the client leg. A tag is the sender's `time.monotonic()` (CLOCK_MONOTONIC: one clock
for every process of the machine) as a little-endian double, one byte per PCM16 sample in the
first `TAG_SAMPLES` samples: values 0..255, i.e. below -42 dBFS, so a tagged frame of room noise
is still room noise (and not voiced) and a tagged speech frame is still speech. One more sample
carries a flag byte: `END_OF_SPEECH` marks the microphone frame on which the fake upstream's
"VAD" ends the user's turn (the cheap stand-in for Gemini's server-side endpointing).
"""

from __future__ import annotations

import base64
import struct

TAG_SAMPLES = 9  # 8 timestamp bytes + 1 flag byte; 18 bytes = whole base64 groups (3 bytes)
TAG_BYTES = 2 * TAG_SAMPLES
TAG_B64_CHARS = TAG_BYTES * 4 // 3  # 24
END_OF_SPEECH = 1


def tag(t: float, flag: int = 0) -> bytes:
    """The 18 bytes that replace the head of a PCM16 frame."""
    out = bytearray(TAG_BYTES)
    out[0:16:2] = struct.pack("<d", t)
    out[16] = flag
    return bytes(out)


def tagged(frame: bytes, t: float, flag: int = 0) -> bytes:
    return tag(t, flag) + frame[TAG_BYTES:]


def read(head: bytes) -> tuple[float, int]:
    """(timestamp, flag) from the first `TAG_BYTES` bytes of a tagged frame."""
    return struct.unpack("<d", head[0:16:2])[0], head[16]


def read_b64(data: str) -> tuple[float, int]:
    """The tag of a base64 PCM payload, decoding only its first 24 characters (either alphabet)."""
    return read(base64.urlsafe_b64decode(data[:TAG_B64_CHARS].translate(_TO_URLSAFE)))


_TO_URLSAFE = str.maketrans("+/", "-_")
