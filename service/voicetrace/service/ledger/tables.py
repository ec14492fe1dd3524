"""The ledger's tables (SQLAlchemy Core, SQLite and PostgreSQL alike), on their own metadata.

- `usage_ledger`: one row per settled generation, unique on (session_id, turn) — a replayed or
  retried write is a no-op; `usage_estimated` flags a generation Gemini reported no usage for;
- `usage_daily`: per user and (configured-time-zone) day, the running totals budgets read; only
  ever changed by `INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x`, in the same
  transaction as the ledger row that caused it, so replicas never lose an increment;
- `user_budgets`: an admin's per-user daily limits (NULL = the settings default).

Money is integer pico-USD (10^-12): exact for every packaged price (USD per 1M tokens with up to
six decimals), summable by the database, and SQLite has no exact decimal type.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
)
from voicetrace.service.sessions.models import UTCDateTime

metadata = MetaData()

# Token counts per modality, as in `TurnSummary.tokens_by_modality` (+ image tokens by source).
TOKEN_COLUMNS: tuple[str, ...] = (
    "input_text",
    "input_audio",
    "input_image",
    "output_text",
    "output_audio",
    "output_image",
    "output_reasoning",
    "camera_tokens",
    "screen_tokens",
)
# What `usage_daily` sums (and `/costs` aggregates).
SUM_COLUMNS: tuple[str, ...] = (
    "turns",
    "input_tokens",
    "output_tokens",
    *TOKEN_COLUMNS,
    "audio_in_us",
    "audio_out_us",
    "cost_pusd",
)


def _sums() -> list[Column[int]]:
    return [Column(name, BigInteger, nullable=False, default=0) for name in SUM_COLUMNS]


usage_ledger = Table(
    "usage_ledger",
    metadata,
    Column(
        "pk", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("session_id", String(64), nullable=False),
    Column("turn", Integer, nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("model", String(128), nullable=False),
    Column("price_model", String(128)),
    Column("day", Date, nullable=False),
    Column("settled_at", UTCDateTime, nullable=False),
    Column("usage_received", Boolean, nullable=False),
    Column("cost_known", Boolean, nullable=False),
    Column("cost_estimated", Boolean, nullable=False),
    # Gemini reported no usage: the tokens are the telemetry's estimate (`usage_received` is
    # false). Added after the first release: the server default lets `ADD COLUMN` bring an
    # existing ledger up to date (`LedgerStore.create_schema`).
    Column("usage_estimated", Boolean, nullable=False, default=False, server_default=false()),
    *_sums(),
    UniqueConstraint("session_id", "turn", name="uq_usage_ledger_generation"),
    Index("ix_usage_ledger_user_day", "user_id", "day"),
    Index("ix_usage_ledger_day", "day"),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("day", Date, primary_key=True),
    *_sums(),
)

user_budgets = Table(
    "user_budgets",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("daily_usd_pusd", BigInteger),
    Column("daily_audio_minutes", Float),
    Column("daily_video_tokens", BigInteger),
    Column("daily_screen_tokens", BigInteger),
    Column("updated_by", String(255), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
