"""What direct-mode clients post to `/api/live/*` and get back (see `api.live_direct`).

Strict on purpose: unknown fields and unknown event types are a 422 that names the field, so a
client bug shows up at once instead of as a quietly wrong trace. Only Gemini's own
`usageMetadata` ignores fields it does not know, so a newer Gemini cannot break tracing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from voicetrace.telemetry import ModalityTokens, UsageSnapshot

MAX_EVENTS_PER_BATCH = 500

# -- what the client posts --------------------------------------------------------------------

Text = Annotated[str, Field(max_length=8_000)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: Annotated[int, Field(ge=1, le=10**12, description="Client sequence number, from 1.")]
    at_ms: float | None = Field(
        default=None, description="Client clock (epoch ms) when it happened; default: arrival."
    )


class UserAudio(_Event):
    type: Literal["user_audio"]
    duration_ms: Annotated[float, Field(gt=0, le=10_000)]
    voiced: bool


class UserText(_Event):
    type: Literal["user_text"]
    text: Annotated[str, Field(min_length=1, max_length=8_000)]


class InputTranscript(_Event):
    type: Literal["input_transcript"]
    text: Text
    finished: bool = False


class ModelAudio(_Event):
    type: Literal["model_audio"]
    duration_ms: Annotated[float, Field(gt=0, le=60_000)]  # 24 kHz speech received


class OutputTranscript(_Event):
    type: Literal["output_transcript"]
    text: Text


class ToolCall(_Event):
    type: Literal["tool_call"]
    call_id: Name
    name: Name
    args: dict[str, Any] = Field(default_factory=dict)


class ToolResult(_Event):
    type: Literal["tool_result"]
    call_id: Name
    ok: bool
    error: Annotated[str, Field(max_length=1_000)] | None = None
    duration_ms: Annotated[float, Field(ge=0)] | None = None


class Signal(_Event):
    type: Literal["interrupted", "generation_complete", "turn_complete"]


class _Modality(BaseModel):
    model_config = ConfigDict(extra="ignore")
    modality: str = "TEXT"
    tokenCount: Annotated[int, Field(ge=0)] = 0


class UsageMetadata(BaseModel):
    """`usageMetadata` exactly as Gemini Live sent it (camelCase); unknown fields are ignored
    so a newer Gemini does not break tracing."""

    model_config = ConfigDict(extra="ignore")
    promptTokenCount: Annotated[int, Field(ge=0)] = 0
    cachedContentTokenCount: Annotated[int, Field(ge=0)] = 0
    responseTokenCount: Annotated[int, Field(ge=0)] = 0
    toolUsePromptTokenCount: Annotated[int, Field(ge=0)] = 0
    thoughtsTokenCount: Annotated[int, Field(ge=0)] = 0
    totalTokenCount: Annotated[int, Field(ge=0)] = 0
    promptTokensDetails: list[_Modality] = Field(default_factory=list, max_length=16)
    cacheTokensDetails: list[_Modality] = Field(default_factory=list, max_length=16)
    responseTokensDetails: list[_Modality] = Field(default_factory=list, max_length=16)
    toolUsePromptTokensDetails: list[_Modality] = Field(default_factory=list, max_length=16)

    def to_usage(self) -> UsageSnapshot:
        """The telemetry's one usage type, read as reported (like the Gemini adapter does)."""

        def counts(details: list[_Modality]) -> tuple[ModalityTokens, ...]:
            known = ("TEXT", "AUDIO", "IMAGE", "VIDEO", "DOCUMENT")
            return tuple(
                ModalityTokens(d.modality, d.tokenCount) for d in details if d.modality in known
            )

        return UsageSnapshot(
            prompt=self.promptTokenCount,
            cached=self.cachedContentTokenCount,
            response=self.responseTokenCount,
            tool_use_prompt=self.toolUsePromptTokenCount,
            thoughts=self.thoughtsTokenCount,
            total=self.totalTokenCount,
            prompt_details=counts(self.promptTokensDetails),
            cache_details=counts(self.cacheTokensDetails),
            response_details=counts(self.responseTokensDetails),
            tool_use_prompt_details=counts(self.toolUsePromptTokensDetails),
        )


class UsageEvent(_Event):
    type: Literal["usage"]
    usage_metadata: UsageMetadata


class Playback(_Event):
    type: Literal["playback"]
    turn: Annotated[int, Field(ge=1)]
    event: Literal["started", "stopped"]
    played_ms: Annotated[float, Field(ge=0)] = 0.0


class GoAway(_Event):
    type: Literal["go_away"]
    time_left_s: Annotated[float, Field(ge=0)]


class ModelError(_Event):
    type: Literal["error"]
    code: int | None = None
    reason: Annotated[str, Field(max_length=500)] = ""


AnyEvent = (
    UserAudio
    | UserText
    | InputTranscript
    | ModelAudio
    | OutputTranscript
    | ToolCall
    | ToolResult
    | Signal
    | UsageEvent
    | Playback
    | GoAway
    | ModelError
)
TraceEvent = Annotated[AnyEvent, Field(discriminator="type")]


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sessionId: Name
    sent_at_ms: float | None = Field(
        default=None, description="Client clock when posted: maps event times to server time."
    )
    events: list[TraceEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


class EndRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sessionId: Name
    reason: Literal["completed", "client_disconnect", "model_error"] = "completed"


class ToolCallRequest(BaseModel):
    """A function call Gemini asked the direct client for; the service's tools run it."""

    model_config = ConfigDict(extra="forbid")
    sessionId: Name
    call_id: Name
    name: Name
    args: dict[str, Any] = Field(default_factory=dict)


class ToolCallResponse(BaseModel):
    response: dict[str, Any] = Field(description="What to send Gemini as the function response.")
    scheduling: str | None = Field(default=None, description="For NON_BLOCKING tools.")
    ok: bool
    error: str | None = None
    duration_ms: float


class TokenResponse(BaseModel):
    sessionId: str
    token: str = Field(description="Ephemeral Gemini token (`auth_tokens/…`), one use.")
    expiresAt: dt.datetime
    model: str
    wsUrl: str = Field(description="Gemini Live's constrained endpoint; add `?access_token=`.")
