"""What the voice bridge needs from a live model, independent of any SDK.

`LiveModel` is the seam: the Gemini adapter (`voicetrace.service.voice.gemini`) implements it,
and a second provider, or a recorded session, can be plugged into the bridge the same way.
`LiveModelConfig` shapes one session's setup; failures are `LiveModelError`s carrying the
WebSocket close code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from voicetrace.service.voice import events as ev
from voicetrace.service.voice.tools import FunctionSpec


@dataclass(frozen=True)
class LiveModelConfig:
    """Everything that shapes one Live session (the setup message), SDK-independent."""

    model: str = "gemini-3.8-live"
    voice: str | None = "Puck"
    system_prompt: str | None = None
    tools: Sequence[FunctionSpec] = ()
    input_transcription: bool = True
    output_transcription: bool = True
    resumption: bool = True
    automatic_activity_detection: bool = True
    silence_duration_ms: int | None = None
    # Tokens per camera/screen frame (None: the model's default); see voice.video.
    media_resolution: Literal["low", "medium", "high"] | None = None
    api_key: str | None = None  # None → the SDK's own env handling (GEMINI_API_KEY)
    connect_timeout_s: float = 10.0
    max_reconnects: int = 3

    def __post_init__(self) -> None:
        if not self.model or not self.model.strip():
            raise ValueError("model must be a model name such as 'gemini-3.8-live'")
        if self.connect_timeout_s <= 0:
            raise ValueError("connect_timeout_s must be positive")
        if self.max_reconnects < 0:
            raise ValueError("max_reconnects must be >= 0")
        if self.silence_duration_ms is not None and self.silence_duration_ms <= 0:
            raise ValueError("silence_duration_ms must be positive")

    def __repr__(self) -> str:  # the API key never reaches logs or spans
        key = "set" if self.api_key else None
        return f"LiveModelConfig(model={self.model!r}, voice={self.voice!r}, api_key={key})"


class LiveModelError(Exception):
    """A live-session failure with the WebSocket close code (or None) and the server's reason."""

    def __init__(self, code: int | None, reason: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {reason}" if code is not None else reason)
        self.code = code
        self.reason = reason
        self.retryable = retryable


class ModelConnectError(LiveModelError):
    """Opening the Live session failed (bad key, unknown model, unreachable, timeout…)."""


class LiveModel(Protocol):
    """One live conversation with a model: connect, stream events, send input, close."""

    @property
    def endpoint(self) -> tuple[str, int]:
        """Host and port of the model server (for the `server.*` span attributes)."""
        ...

    async def connect(self) -> None:
        """Open the session; raises `ModelConnectError` with a close code and reason."""
        ...

    async def close(self) -> None:
        """End the conversation (idempotent); `events()` ends."""
        ...

    def events(self) -> AsyncIterator[ev.ModelEvent]:
        """Every event of the conversation until `close()` or a final `ModelError`."""
        ...

    async def send_audio(self, pcm16_16k: bytes) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def send_video(self, image: bytes, mime_type: str) -> None:
        """One camera or screen frame (JPEG or PNG) as realtime video input."""
        ...

    async def send_audio_end(self) -> None: ...

    async def send_activity_start(self) -> None: ...

    async def send_activity_end(self) -> None: ...

    async def send_tool_results(self, results: Sequence[ev.ToolResult]) -> None: ...
