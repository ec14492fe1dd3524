"""Pydantic shapes of a live session: what clients send and what the API and the store return.

`LiveSession.secrets_blurred` holds the strings the client asked us to blur out of transcripts —
secrets by definition. The field is excluded from every serialization (API responses, `model_dump`)
and from `repr`, so neither a response nor a log line can carry it; clients see only a count.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field, model_validator
from voicetrace.service.sessions.state import SessionState

# Upper bounds keep every limit far inside the columns (BIGINT, micro-dollar BIGINT, double) on
# SQLite and PostgreSQL alike: out of range is a clear 422, never a 500 from the driver.
MAX_USD = Decimal(1_000_000_000)
MAX_MINUTES = 10_000_000.0  # ~19 years of audio
MAX_TOKENS = 10**15

# Money stays Decimal in Python but is a plain JSON number on the wire.
Usd = Annotated[
    Decimal,
    Field(ge=0, le=MAX_USD, max_digits=18, decimal_places=6, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Minutes = Annotated[float, Field(ge=0, le=MAX_MINUTES, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Secret = Annotated[str, Field(min_length=1, max_length=256)]

MAX_TRANSCRIPT_CHARS = 200_000


class Budgets(BaseModel):
    """Optional usage limits; `None` means unlimited and `0` means none at all. Daily limits are
    per user and day (enforced from the usage ledger), session limits apply to this session alone
    (enforced by the bridge; the store flags them from the recorded turns too)."""

    model_config = ConfigDict(extra="forbid")

    daily_usd: Usd | None = None
    daily_audio_minutes: Minutes | None = None
    daily_video_tokens: Tokens | None = None
    daily_screen_tokens: Tokens | None = None
    session_usd: Usd | None = None
    session_audio_minutes: Minutes | None = None
    session_video_tokens: Tokens | None = None
    session_screen_tokens: Tokens | None = None


BUDGET_FIELDS: tuple[str, ...] = tuple(Budgets.model_fields)


class SessionCreate(BaseModel):
    """Body of `POST /live-sessions`. The owner is never part of it: it is the token's subject."""

    model_config = ConfigDict(extra="forbid")

    mode: str = Field(
        default="voice",
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Free-form client mode label (e.g. `LS1A`); becomes a trace tag.",
    )
    recording_consent: bool = Field(
        default=False,
        description="Whether transcripts and content may be recorded in telemetry.",
    )
    secrets_blurred: list[Secret] = Field(
        default_factory=list,
        max_length=64,
        description="Strings to redact from transcripts and telemetry. Write-only: responses "
        "report only `secrets_blurred_count`.",
    )
    budgets: Budgets = Field(default_factory=Budgets)


class SessionUpdate(BaseModel):
    """Body of `PATCH /live-sessions/{id}`: only the fields present are changed.

    Budget fields are merged one by one (a patch with `session_usd` leaves `daily_usd` alone);
    an explicit `null` clears a field.
    """

    model_config = ConfigDict(extra="forbid")

    transcript_partial: str | None = Field(default=None, max_length=MAX_TRANSCRIPT_CHARS)
    transcript_final: str | None = Field(default=None, max_length=MAX_TRANSCRIPT_CHARS)
    budgets: Budgets | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> SessionUpdate:
        if not self.model_fields_set:
            raise ValueError("the update is empty: give at least one field to change")
        if "budgets" in self.model_fields_set and self.budgets is None:
            raise ValueError("budgets cannot be null; set individual budget fields to null")
        return self

    def changes(self) -> dict[str, Any]:
        """Column → value for exactly the fields the client sent (budgets flattened)."""
        values: dict[str, Any] = {}
        for name in ("transcript_partial", "transcript_final"):
            if name in self.model_fields_set:
                values[name] = getattr(self, name)
        if self.budgets is not None:
            for name in self.budgets.model_fields_set:
                values[name] = getattr(self.budgets, name)
        return values


class SessionUsage(BaseModel):
    """Running totals of the session's settled turns, persisted as each turn ends."""

    model_config = ConfigDict(frozen=True)

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Usd = Decimal(0)
    audio_in_s: float = 0.0
    audio_out_s: float = 0.0
    camera_tokens: int = 0  # image input tokens of camera frames
    screen_tokens: int = 0  # image input tokens of screen-share frames


class LiveSession(BaseModel):
    """One live session as stored, and as returned by the API (minus the blurred secrets)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="UUID4.")
    user_id: str = Field(description="Owner: the subject of the token that created it.")
    state: SessionState
    state_reason: str | None = Field(
        default=None, description="Why the last transition happened (e.g. `budget_exhausted`)."
    )
    mode: str
    recording_consent: bool
    secrets_blurred: list[str] = Field(default_factory=list, exclude=True, repr=False)
    created_at: datetime
    started_at: datetime | None = Field(default=None, description="First time it became LIVE.")
    updated_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None
    transcript_partial: str | None = None
    transcript_final: str | None = None
    budgets: Budgets = Field(default_factory=Budgets)
    audio_minutes_used: float = 0.0
    summary: dict[str, Any] | None = Field(
        default=None, description="Turns, tool calls, tokens and cost, filled when it ends."
    )
    usage: SessionUsage = Field(
        default_factory=SessionUsage, description="Totals of the turns settled so far."
    )
    budget_exhausted: str | None = Field(
        default=None,
        description="The budget field that ran out (e.g. `session_usd`); resume is refused "
        "while it is set. Raising that budget clears it.",
    )
    owner_instance: str | None = Field(
        default=None, description="The service instance whose voice bridge holds the session."
    )
    lease_expires_at: datetime | None = Field(
        default=None, description="Until when the owner instance is known to be alive."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def secrets_blurred_count(self) -> int:
        """How many secrets are blurred; the secrets themselves are never returned."""
        return len(self.secrets_blurred)


class LiveSessionView(LiveSession):
    """A session as the REST API returns it: the stored session plus the owner's daily budget
    left today under this session's own caps (the computation `GET /api/budgets/me` shows)."""

    daily_budget_remaining: dict[str, float | None] | None = Field(
        default=None,
        description="`usd`, `audioMin`, `videoTokens`, `screenTokens` left today (null = "
        "unlimited); null while the usage ledger is not available.",
        examples=[{"usd": 1.25, "audioMin": 42.5, "videoTokens": 9_300, "screenTokens": None}],
    )


class LiveSessionList(BaseModel):
    sessions: list[LiveSessionView]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_transition`.")
    message: str
    current: SessionState | None = Field(default=None, description="On `invalid_transition`.")
    requested: SessionState | None = Field(default=None, description="On `invalid_transition`.")
    owner: str | None = Field(default=None, description="On `owned_by_other_instance`.")
    lease_expires_at: datetime | None = Field(
        default=None, description="On `owned_by_other_instance`."
    )
    budget: str | None = Field(default=None, description="On `budget_exhausted`.")
    limit: int | None = Field(default=None, description="On `too_many_*_sessions`.")


class ErrorResponse(BaseModel):
    """Body of every 401, 404, 409, 413 and 429 response."""

    detail: ErrorDetail
