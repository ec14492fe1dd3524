"""Camera and screen frames from the client: validation, per-source rate limits, token costs.

A `video_frame` message carries one JPEG or PNG image, base64 in JSON (binary WebSocket frames
are PCM audio). It is checked before anything reaches Gemini: the declared type must be JPEG or
PNG and match the image's magic bytes (JPEG `FF D8 FF`, PNG `89 50 4E 47 0D 0A 1A 0A`), and it
must fit `max_video_frame_bytes`. Each source has its own rate (`max_video_fps`, a burst of one
second's worth), so a screen share cannot starve the camera. A refused frame is an `error` frame
with a code; the session and every frame already accepted go on.

`tokens_per_frame` is what Gemini documents a video frame costs at each media resolution (see
docs/costs.md for the sources); the bridge projects unsettled frames with it so a long screen
share is paused within a few frames of its budget, before its turn's usage is even reported.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Final, Literal

from voicetrace.service.voice.limits import TokenBucket
from voicetrace.service.voice.protocol import ProtocolError, VideoFrame
from voicetrace.telemetry.frames import FrameSource

MediaResolution = Literal["low", "medium", "high"]

IMAGE_TYPES: Final = {
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
}
JSON_OVERHEAD: Final = 256  # the `video_frame` envelope around the base64 image

# Tokens per video frame (Gemini API "Media resolution" → token counts). Gemini 3 models cap a
# video frame at 70 tokens at LOW and MEDIUM (the default) and 280 at HIGH; Gemini 2.x models
# bill 258 per frame by default and 66 at LOW.
_GEMINI_3: Final[dict[MediaResolution | None, int]] = {
    None: 70,
    "low": 70,
    "medium": 70,
    "high": 280,
}
_GEMINI_2: Final[dict[MediaResolution | None, int]] = {
    None: 258,
    "low": 66,
    "medium": 258,
    "high": 258,
}


def tokens_per_frame(model: str, resolution: MediaResolution | None) -> int:
    """Prompt tokens one camera or screen frame costs on `model` at `resolution`."""
    name = model.removeprefix("models/")
    table = _GEMINI_2 if name.startswith(("gemini-2", "gemini-live-2")) else _GEMINI_3
    return table[resolution]


def max_text_bytes(max_frame_bytes: int) -> int:
    """The largest `video_frame` text message an image of `max_frame_bytes` makes."""
    return 4 * math.ceil(max_frame_bytes / 3) + JSON_OVERHEAD


def decode_frame(msg: VideoFrame, max_bytes: int) -> bytes:
    """The image bytes of a valid frame, or `ProtocolError` with a stable code."""
    magic = IMAGE_TYPES.get(msg.mime_type)
    if magic is None:
        raise ProtocolError(
            "unsupported_image_type",
            f"video_frame: mime_type {msg.mime_type[:40]!r} is not one of {', '.join(IMAGE_TYPES)}",
        )
    if len(msg.data) > max_text_bytes(max_bytes) - JSON_OVERHEAD:
        raise ProtocolError("frame_too_large", f"video_frame: the image exceeds {max_bytes} bytes")
    try:
        image = base64.b64decode(msg.data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad_image_data", "video_frame: data is not valid base64") from None
    if len(image) > max_bytes:
        raise ProtocolError(
            "frame_too_large",
            f"video_frame: the image is {len(image)} bytes, more than {max_bytes}",
        )
    if not image.startswith(magic):
        raise ProtocolError(
            "image_type_mismatch",
            f"video_frame: the data is not a {msg.mime_type} image (wrong magic bytes)",
        )
    return image


class FrameRates:
    """`max_fps` frames per second per source, a burst of one second's worth (at least 1)."""

    def __init__(self, max_fps: float) -> None:
        burst = max(1.0, max_fps)
        self.max_fps = max_fps
        self._buckets = {
            "camera": TokenBucket(max_fps, burst),
            "screen": TokenBucket(max_fps, burst),
        }

    def check(self, source: FrameSource) -> None:
        if not self._buckets[source].take():
            raise ProtocolError(
                "video_rate_limited",
                f"more than {self.max_fps:g} {source} frames per second; this frame was dropped",
                throttled=True,
            )
