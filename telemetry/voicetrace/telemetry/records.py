"""The plain, frozen data the public API takes and returns.

They are SDK-independent (no OTel, no google-genai), so any voice app can build them and the
summaries can be sent to a client as JSON (`as_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who and what a voice session is; fixed at its start."""

    session_id: str
    user_id: str
    model: str
    provider: str = "gcp.gemini"
    agent_name: str = "voicetrace"
    recording_consent: bool = False
    secrets_blurred: tuple[str, ...] = ()
    system_prompt: str | None = None
    tags: tuple[str, ...] = ()
    environment: str | None = None
    server_address: str | None = None
    server_port: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, str) or not self.session_id:
            raise ValueError("SessionInfo.session_id must be a non-empty string")
        if not isinstance(self.user_id, str) or not self.user_id:
            raise ValueError("SessionInfo.user_id must be a non-empty string")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("SessionInfo.model must be a non-empty string")


@dataclass(frozen=True, slots=True)
class ModalityTokens:
    """One entry of Gemini's per-modality token details (TEXT, AUDIO, IMAGE, VIDEO, DOCUMENT)."""

    modality: str
    tokens: int


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """One Gemini `usageMetadata` message, as reported (never summed within a turn).

    Gemini semantics: `prompt` is the whole context re-billed this turn and includes `cached`;
    `tool_use_prompt` is extra input; `thoughts` is extra output (billed as output); `total` is
    Gemini's own total, kept for reference.
    """

    prompt: int = 0
    cached: int = 0
    response: int = 0
    tool_use_prompt: int = 0
    thoughts: int = 0
    total: int = 0
    prompt_details: tuple[ModalityTokens, ...] = ()
    cache_details: tuple[ModalityTokens, ...] = ()
    response_details: tuple[ModalityTokens, ...] = ()
    tool_use_prompt_details: tuple[ModalityTokens, ...] = ()


@dataclass(frozen=True, slots=True)
class TurnSummary:
    """What one turn took: the same numbers its spans carry (JSON-able via `as_dict`).

    The phases are contiguous and `total_ms == user_speech_ms + endpointing_ms + response_ms`
    exactly (total is defined as their sum).
    """

    number: int
    end_reason: str
    trigger: str
    user_speech_ms: float
    endpointing_ms: float
    response_ms: float
    total_ms: float
    ttfa_ms: float | None
    tool_ms: float
    input_tokens: int
    output_tokens: int
    tokens_by_modality: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    audio_in_ms: float = 0.0
    audio_out_ms: float = 0.0
    heard_ms: float | None = None
    interrupted: bool = False
    usage_received: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """Totals of one session (also written on the root span as `voice.session.*`)."""

    session_id: str
    end_reason: str
    turns: int
    tool_calls: int
    tool_errors: int
    interruptions: int
    duration_s: float
    input_tokens: int
    output_tokens: int
    tokens_by_modality: dict[str, int]
    cost_usd: float | None
    audio_in_s: float
    audio_out_s: float
    reconnects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
