"""All service configuration, read once from the environment (and `.env`).

Telemetry export is configured by the standard `OTEL_*` variables (and `LANGFUSE_*` for direct
export), which the OTel SDK and `telemetry.setup` read themselves; only the Langfuse keys and host
are read here too, for the service's own calls to Langfuse's API (costs, reconcile, health).
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def random_instance_id() -> str:
    """A fresh id per process: a restarted replica is a new owner (see docs/reliability.md)."""
    return f"vt-{secrets.token_hex(6)}"


# Good for a laptop; `voicetrace serve` refuses it on any address other people can reach.
DEV_JWT_SECRET = "voicetrace-development-secret-change-me-in-production"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VOICETRACE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # HTTP server
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"

    # Auth: HS256 JWT bearer tokens. The default secret is for local development only.
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_ttl_s: int = 3600

    # Storage: SQLite file by default; `DATABASE_URL` (no prefix) switches to PostgreSQL.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    sqlite_path: Path = Path("voicetrace.db")

    # Gemini Live
    gemini_api_key: SecretStr | None = Field(default=None, validation_alias="GEMINI_API_KEY")
    model: str = "gemini-3.8-live"
    voice: str = "Puck"
    system_prompt: str = (
        "You are a concise, friendly voice assistant. You can look up nearby places and give "
        "directions with your tools."
    )
    silence_duration_ms: int = 300
    # Server-side voice activity detection ends turns; turn it off for push-to-talk clients,
    # which then mark turns with `activity_start` / `activity_end`.
    automatic_activity_detection: bool = True
    model_connect_timeout_s: float = 10.0

    # Tools
    tool_timeout_s: float = 5.0

    # Client-direct sessions: ended (reason `orphaned`) after this long without trace events.
    direct_orphan_timeout_s: float = Field(default=1800.0, gt=0)

    # WebSocket limits: abuse closes the socket (1008/1009), bad frames get an `error` frame.
    max_frame_bytes: int = 64_000
    max_frames_per_s: int = 200
    max_bad_frames: int = 20
    max_audio_speed: float = 2.0  # sustained audio seconds per wall-clock second
    audio_burst_s: float = 30.0  # audio that may arrive at once (a client catching up)
    # Typed input is billed as prompt tokens (about 4 characters each): a sustained rate, with a
    # burst of a quarter of it. Over the limit, the text is refused with `error{rate_limited}`.
    max_text_tokens_per_minute: int = Field(default=12_000, ge=1, le=10_000_000)
    # Camera and screen frames (`video_frame`, JPEG or PNG): decoded bytes per frame, and frames
    # per second per source (Gemini Live samples video at about 1 fps; frames beyond the rate are
    # refused with `error{video_rate_limited}`). `media_resolution` (None: the model's default)
    # sets the tokens each frame costs (docs/costs.md).
    max_video_frame_bytes: int = Field(default=256_000, ge=1_024, le=8_000_000)
    max_video_fps: float = Field(default=2.0, gt=0, le=60)
    media_resolution: Literal["low", "medium", "high"] | None = None

    # Telemetry (export targets come from OTEL_* / LANGFUSE_* env vars)
    agent_name: str = "voicetrace"
    environment: str = "development"
    prices_file: Path | None = None
    usage_wait_s: float = 2.0
    budget_warn_ratio: float = 0.8
    # Per-user daily budgets (DESIGN §5): defaults for every user (None = unlimited); an admin's
    # per-user limits replace them (PUT /api/budgets/users/{id}). The day is this time zone's.
    budget_timezone: str = "UTC"
    daily_budget_usd: Decimal | None = Field(default=None, ge=0)
    daily_budget_audio_minutes: float | None = Field(default=None, ge=0)
    daily_budget_video_tokens: int | None = Field(default=None, ge=0)
    daily_budget_screen_tokens: int | None = Field(default=None, ge=0)
    # Settled usage waiting for the ledger's database (an outage); beyond it, counted as lost.
    ledger_buffer: int = Field(default=10_000, ge=1)
    flush_timeout_s: float = 5.0
    shutdown_grace_s: float = 5.0

    # Reliability and abuse limits (docs/reliability.md). Replicas sharing one database need
    # distinct instance ids; a stable one per replica (pod name) lets a restart close its own
    # sessions at once instead of after their lease.
    instance_id: str = Field(
        default_factory=random_instance_id, min_length=1, max_length=64, pattern=r"^[\w.:-]+$"
    )
    session_lease_s: float = Field(default=30.0, gt=0, le=3600)
    session_connect_timeout_s: float = Field(default=180.0, gt=0, le=86_400)
    max_live_sessions_per_user: int = Field(default=10, ge=1, le=10_000)
    max_open_sessions_per_user: int = Field(default=10, ge=1, le=10_000)
    # HTTP: bodies over this are refused (413) before any parsing; a request's headers must
    # arrive within `http_header_timeout_s` and each body chunk within `http_body_timeout_s`.
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    http_keep_alive_s: int = Field(default=5, ge=1)
    http_max_header_bytes: int = Field(default=16_384, ge=1024)
    # permessage-deflate costs CPU and memory per socket and audio does not compress.
    ws_compression: bool = False
    # The same for the Live socket to Gemini (the SDK offers permessage-deflate by default).
    model_ws_compression: bool = False
    # With Langfuse credentials: voice KPIs as Langfuse scores, and (content capture + consent)
    # each turn's audio as Langfuse media.
    langfuse_scores: bool = True
    langfuse_media: bool = True
    # Langfuse's public API, read by `/api/observability/costs?source=langfuse`, `/costs/reconcile`
    # and `/api/observability/health`: the standard variables the direct export reads, or the
    # VOICETRACE_-prefixed ones to read Langfuse without exporting to it directly (spans going
    # through a collector instead, as in docker-compose.yml).
    langfuse_public_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VOICETRACE_LANGFUSE_PUBLIC_KEY", "LANGFUSE_PUBLIC_KEY"),
    )
    langfuse_secret_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("VOICETRACE_LANGFUSE_SECRET_KEY", "LANGFUSE_SECRET_KEY"),
    )
    langfuse_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "VOICETRACE_LANGFUSE_HOST", "LANGFUSE_HOST", "LANGFUSE_BASE_URL"
        ),
    )
    langfuse_query_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Health probes (Langfuse health + auth, the collector): each bounded by this timeout, their
    # results reused for `health_cache_s` so that polling `/health` stays cheap.
    collector_health_url: str | None = None  # e.g. http://otel-collector:13133/ (health_check)
    health_probe_timeout_s: float = Field(default=1.0, gt=0, le=30)
    health_cache_s: float = Field(default=5.0, ge=0, le=300)

    @field_validator("budget_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Europe/Paris)"
            ) from None
        return value

    @cached_property
    def budget_zone(self) -> ZoneInfo:
        return ZoneInfo(self.budget_timezone)

    def check_servable(self) -> None:
        """Refuse settings that are only safe on a developer's own machine."""
        secret = self.jwt_secret.get_secret_value()
        if self.host not in LOOPBACK_HOSTS and secret == DEV_JWT_SECRET:
            raise ValueError(
                f"refusing to serve on {self.host} with the development JWT secret: "
                "set VOICETRACE_JWT_SECRET (e.g. openssl rand -hex 32)"
            )
        if len(secret.encode()) < 32:
            raise ValueError("VOICETRACE_JWT_SECRET must be at least 32 bytes for HS256")

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the usual `postgresql://` spelling and pick the async driver for it.
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+asyncpg://" + url[len(prefix) :]
            return url
        return f"sqlite+aiosqlite:///{self.sqlite_path}"
