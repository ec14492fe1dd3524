"""The plain, frozen data the public API takes and returns.

They are SDK-independent (no OTel, no google-genai), so any voice app can build them. Money is
`Decimal` here (exact, summable); `to_json()` is the one edge where it becomes a JSON number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class EndReason(StrEnum):
    """Why a turn or a session ended (`voice.turn.end_reason`, `voice.session.end_reason`, the
    client's `session_ended.reason`). Defined once; anything else becomes `internal_error`."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    TOOL_ERROR = "tool_error"
    MODEL_ERROR = "model_error"
    CLIENT_DISCONNECT = "client_disconnect"
    SERVER_SHUTDOWN = "server_shutdown"
    BUDGET_EXHAUSTED = "budget_exhausted"  # a budget paused the session
    ENDED_BY_USER = "ended_by_user"  # REST DELETE while live
    RATE_LIMITED = "rate_limited"  # the client flooded past a rate limit (closed 1008)
    PROTOCOL_ABUSE = "protocol_abuse"  # too many invalid frames, or one far over the size limit
    ORPHANED = "orphaned"  # a client-direct session that stopped sending trace events
    RECOVERED = "recovered_after_restart"  # its process died; closed on recovery
    INTERNAL_ERROR = "internal_error"

    @classmethod
    def parse(cls, value: str) -> EndReason:
        try:
            return cls(value)
        except ValueError:
            return cls.INTERNAL_ERROR


ERROR_END_REASONS = frozenset({EndReason.MODEL_ERROR, EndReason.INTERNAL_ERROR})


def _json_money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


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
    cost_usd: Decimal | None = None
    audio_in_ms: float = 0.0
    audio_out_ms: float = 0.0
    heard_ms: float | None = None
    interrupted: bool = False
    usage_received: bool = False  # Gemini reported this turn's usage
    usage_estimated: bool = False  # it did not: the tokens are `estimates.estimate_usage`'s
    # The turn's image input tokens split by source (telemetry.frames), and the frames of each
    # source forwarded during the turn.
    camera_tokens: int = 0
    screen_tokens: int = 0
    camera_frames: int = 0
    screen_frames: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-able (cost as a float: the edge where money is rounded)."""
        out = asdict(self)
        out["cost_usd"] = _json_money(self.cost_usd)
        return out


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
    cost_usd: Decimal | None
    audio_in_s: float
    audio_out_s: float
    reconnects: int = 0
    camera_tokens: int = 0
    screen_tokens: int = 0
    camera_frames: int = 0
    screen_frames: int = 0

    @property
    def audio_minutes(self) -> float:
        return (self.audio_in_s + self.audio_out_s) / 60.0

    def to_json(self) -> dict[str, Any]:
        """JSON-able (cost as a float: the edge where money is rounded)."""
        out = asdict(self)
        out["cost_usd"] = _json_money(self.cost_usd)
        return out


# Called once per turn when its usage is settled (on time, late, or known to be missing): the
# numbers are final and equal the turn's `chat` span. It runs on whichever thread settled the
# turn (the caller's, or the telemetry's emitter thread at a usage deadline), outside the
# session's lock; it must be quick and must not block (an asyncio app hands it to its loop with
# `loop.call_soon_threadsafe`). Exceptions are counted and swallowed.
TurnSettled = Callable[[TurnSummary], None]
