"""Small real images (stdlib only) and helpers for the camera/screen frame tests."""

from __future__ import annotations

import struct
import zlib
from typing import Any


def png(width: int = 8, height: int = 8, shade: int = 0) -> bytes:
    """A valid grayscale PNG (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(
        b"\x00" + bytes([(shade + x) % 256 for x in range(width)]) for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg(size: int = 600) -> bytes:
    """JPEG-framed bytes (SOI, an APP0/JFIF segment, filler, EOI): what the magic check sees."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    body = bytes((i * 7) % 251 for i in range(max(size - 24, 0)))
    return b"\xff\xd8" + app0 + body + b"\xff\xd9"


def video_sent(emulator: Any) -> list[dict[str, Any]]:
    """The `realtime_input.video` blobs the emulator received (as the SDK wrote them)."""
    out = []
    for entry in emulator.wire.select("in", "realtime_input"):
        video = entry.message["realtime_input"].get("video")
        if video is not None:
            out.append(video)
    return out
