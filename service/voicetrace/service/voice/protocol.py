"""The client ⇄ service WebSocket protocol, version 1 (see docs/protocol.md).

Binary frames carry PCM16 mono little-endian audio (16 kHz from the client, 24 kHz to it). Text
frames carry one JSON object with a `type`. Client messages are validated here with pydantic so the
bridge only ever sees well-formed input; anything else becomes a `ProtocolError` with a stable
`code` that is sent back in an `error` frame.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

PROTOCOL_VERSION = 1
SUBPROTOCOL = "voicetrace.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."
INPUT_SAMPLE_RATE = 16_000
OUTPUT_SAMPLE_RATE = 24_000


class ProtocolError(Exception):
    """A client frame we cannot use. The session keeps going; the client gets `error{code}`.

    `throttled`: the input was fine but over a rate, so it was dropped; it never counts toward
    the invalid-frame limit (floods are bounded by the frame rate limit instead)."""

    def __init__(self, code: str, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.throttled = throttled


class _ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextInput(_ClientMessage):
    """A typed user turn."""

    type: Literal["text"]
    text: Annotated[str, Field(min_length=1, max_length=8_000)]

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class AudioEnd(_ClientMessage):
    """The microphone stopped: the model should answer what it heard so far."""

    type: Literal["audio_end"]


class ActivityStart(_ClientMessage):
    """Manual turn-taking (push-to-talk): the user starts speaking."""

    type: Literal["activity_start"]


class ActivityEnd(_ClientMessage):
    type: Literal["activity_end"]


class Playback(_ClientMessage):
    """The client started or stopped playing a turn's audio; feeds perceived latency."""

    type: Literal["playback"]
    event: Literal["started", "stopped"]
    turn: Annotated[int, Field(ge=1, le=1_000_000)]
    # A day of audio at most; finite (JSON's 1e400 parses as inf).
    played_ms: Annotated[float, Field(ge=0, le=86_400_000, allow_inf_nan=False)] = 0.0


class VideoFrame(_ClientMessage):
    """One camera or screen-share image (JPEG or PNG, base64); checked by `voice.video`."""

    type: Literal["video_frame"]
    source: Literal["camera", "screen"]
    mime_type: Annotated[str, Field(min_length=1, max_length=100)]
    data: Annotated[str, Field(min_length=1)]


class End(_ClientMessage):
    """The client ends the session."""

    type: Literal["end"]


ClientMessage = Annotated[
    TextInput | AudioEnd | ActivityStart | ActivityEnd | Playback | VideoFrame | End,
    Field(discriminator="type"),
]
_client_message = TypeAdapter(ClientMessage)
_CLIENT_TYPES = (
    "text",
    "audio_end",
    "activity_start",
    "activity_end",
    "playback",
    "video_frame",
    "end",
)


def parse_client_text(raw: str) -> ClientMessage:
    """Parse one text frame, or raise `ProtocolError` with a stable code."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"text frames must be JSON objects: {exc.msg}") from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit conversion limit
        raise ProtocolError("bad_json", f"unusable JSON value: {exc}"[:200]) from None
    except RecursionError:  # `[[[[…` nested past the parser's stack
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", "text frames must be JSON objects")
    kind = data.get("type")
    if kind not in _CLIENT_TYPES:
        raise ProtocolError(
            "unknown_type",
            f"unknown message type {kind!r}; expected one of {', '.join(_CLIENT_TYPES)}",
        )
    try:
        return _client_message.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise ProtocolError("invalid_message", f"{kind}: {where}: {first['msg']}") from None


def check_audio_frame(frame: bytes, max_bytes: int) -> None:
    """PCM16 frames must hold whole samples and stay under the configured size."""
    if len(frame) > max_bytes:
        raise ProtocolError(
            "frame_too_large", f"audio frame of {len(frame)} bytes exceeds {max_bytes} bytes"
        )
    if len(frame) % 2:
        raise ProtocolError(
            "odd_audio_length", f"PCM16 audio frames need an even byte count, got {len(frame)}"
        )
    if not frame:
        raise ProtocolError("empty_audio", "empty audio frame")


def server_message(type_: str, **fields: Any) -> str:
    """Serialise a service → client message (compact JSON, `type` first)."""
    return json.dumps({"type": type_, **fields}, separators=(",", ":"), default=str)
